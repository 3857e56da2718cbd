# opsflags: PGXS build, plus the README's commands (make run / stop / test).

EXTENSION    = opsflags
MODULE_big   = opsflags
OBJS         = src/opsflags.o src/shmem.o src/spi.o src/cache.o src/hashing.o src/flags.o src/flag_load.o src/invalidation.o src/evaluation.o src/config.o \
               src/audit.o src/maintenance.o src/errors.o src/memcached.o src/health.o \
               src/health_queue.o src/bgworker.o src/worker.o src/usage.o src/publish.o src/restore.o \
               src/http_server.o src/http_conn.o src/http_dbqueue.o src/http_sql.o src/http_routes.o \
               src/http_endpoints.o src/http_probes.o src/http_metrics.o src/http_status.o src/http_flags.o src/http_ofrep.o src/http_launchdarkly.o src/http_unleash.o src/http_api.o \
               src/http_stream.o src/http_tls.o src/http_ofrep_stream.o src/http_launchdarkly_stream.o \
               src/rules.o src/rules_clauses.o src/rules_serve.o src/rules_ops.o src/rules_values.o \
               src/segments.o src/evaluate_all.o src/sha1.o src/rules_ld.o src/api_keys.o src/console_auth.o \
               src/http_console.o
# The install script of the current version is built from one SQL source per
# capability (src/<capability>.sql, beside its C file), concatenated in this
# order: each part needs only what comes before it.  The released scripts
# (sql/released.sha256) and the upgrade scripts are installed as they are.
OPSFLAGS_VERSION = $(shell sed -nE "s/^default_version = '([^']+)'/\1/p" opsflags.control)
OPSFLAGS_SQL = src/opsflags.sql src/restore.sql src/hashing.sql src/flags.sql src/variations.sql \
               src/prerequisites.sql src/evaluation.sql src/launchdarkly.sql src/segments.sql src/rules.sql \
               src/unleash.sql src/unleash_import.sql src/unleash_export.sql src/launchdarkly_data.sql \
               src/config.sql src/cache.sql src/invalidation.sql src/maintenance.sql src/deployments.sql src/health.sql \
               src/health_queue.sql src/errors.sql src/worker.sql src/usage.sql src/publish.sql \
               src/http_probes.sql src/http_metrics.sql src/http_status.sql src/audit.sql src/api_keys.sql src/console_auth.sql src/http_auth.sql src/http_ofrep.sql src/http_launchdarkly.sql src/http_unleash.sql src/http_api.sql
DATA_built   = sql/opsflags--$(OPSFLAGS_VERSION).sql
DATA         = $(filter-out $(DATA_built),$(wildcard sql/opsflags--*.sql))
PG_CPPFLAGS  = -I$(srcdir)/src
# PostgreSQL's own headers trip -Wunused-parameter under -Wextra; everything else is on.
PG_CFLAGS    = -Wall -Wextra -Wno-unused-parameter $(if $(WERROR),-Werror)
SHLIB_LINK   = -lmemcached
EXTRA_CLEAN  = src/status_page.h src/console/*.h

# pg_regress: sql/<name>.sql against expected/<name>.out (the install scripts
# opsflags--*.sql also live in sql/, but only these are run as tests).
REGRESS      = flags evaluation guard privileges errors config audit audit_tenants maintenance deployments health alerts variations segments rules rules_api unleash launchdarkly_data restore launchdarkly_rules http api_keys http_clients console_auth http_api
REGRESS_OPTS = --inputdir=. --load-extension=opsflags

PG_CONFIG ?= /usr/lib/postgresql/15/bin/pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs 2>/dev/null)
ifneq ($(wildcard $(PGXS)),)
include $(PGXS)
else
# No PostgreSQL server headers yet: `make run` and `make test` install them.
all install installcheck:
	@echo "PostgreSQL 15 server development files not found: run 'make run' or 'make test', which install them" >&2; exit 1
endif

# HTTPS (src/http_tls.c) with the OpenSSL that PostgreSQL was built with
ifeq ($(with_ssl),openssl)
SHLIB_LINK  += -lssl -lcrypto
endif

# Every C file includes the shared header (PGXS tracks no header dependencies).
$(OBJS): src/opsflags.h
src/flags.o src/flags.bc src/flag_load.o src/flag_load.bc src/evaluation.o src/evaluation.bc src/evaluate_all.o src/evaluate_all.bc \
  src/invalidation.o src/invalidation.bc: src/flags.h src/rules.h
src/rules.o src/rules.bc src/rules_clauses.o src/rules_clauses.bc src/rules_serve.o src/rules_serve.bc \
  src/rules_ops.o src/rules_ops.bc src/rules_values.o src/rules_values.bc src/rules_ld.o src/rules_ld.bc \
  src/segments.o src/segments.bc: src/flags.h src/rules.h
src/health.o src/health.bc src/health_queue.o src/health_queue.bc: src/health.h
$(filter src/http%,$(OBJS)) $(patsubst %.o,%.bc,$(filter src/http%,$(OBJS))): src/http.h src/http_core.h

# The status page, served by src/http_status.c, as a C string literal.
src/http_status.o src/http_status.bc: src/status_page.h
src/status_page.h: src/status_page.html
	sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/?/\\?/g' -e 's/^/"/' -e 's/$$/\\n"/' $< >$@

# The console's page, script and style sheet, served by src/http_console.c,
# each a C string literal in the same way.
CONSOLE_FILES = src/console/console.html src/console/app.js src/console/app.css
src/http_console.o src/http_console.bc: $(CONSOLE_FILES:%=%.h)
src/console/%.h: src/console/%
	sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/?/\\?/g' -e 's/^/"/' -e 's/$$/\\n"/' $< >$@

# The full install script: the capability sources in order, each introduced
# by its file name.
$(DATA_built): $(OPSFLAGS_SQL) $(srcdir)/opsflags.control
	{ echo '-- opsflags $(OPSFLAGS_VERSION): generated by make from $(OPSFLAGS_SQL); edit those.'; \
	  for f in $(OPSFLAGS_SQL); do echo; echo "-- ==== $$f ===="; echo; cat $(srcdir)/$$f; done; } >$@

.PHONY: run stop test test-matrix bench valgrind
run:
	@scripts/run.sh
stop:
	@scripts/stop.sh
test:
	@scripts/test.sh
# pg_regress and pgTAP on PostgreSQL 17 and 18, in Debian chroots (root, network)
test-matrix:
	@scripts/matrix.sh
bench:
	@bench/run.sh
valgrind:
	@scripts/valgrind.sh
