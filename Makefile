# opsflags: PGXS build, plus the README's commands (make run / stop / test).

EXTENSION    = opsflags
MODULE_big   = opsflags
OBJS         = src/opsflags.o src/shmem.o src/spi.o src/cache.o src/hashing.o src/flags.o src/config.o \
               src/audit.o src/maintenance.o src/errors.o src/memcached.o src/health.o \
               src/worker.o src/usage.o src/publish.o src/http.o src/http_sql.o src/restore.o
DATA         = $(wildcard sql/opsflags--*.sql)
PG_CPPFLAGS  = -I$(srcdir)/src
# PostgreSQL's own headers trip -Wunused-parameter under -Wextra; everything else is on.
PG_CFLAGS    = -Wall -Wextra -Wno-unused-parameter $(if $(WERROR),-Werror)
SHLIB_LINK   = -lmemcached
EXTRA_CLEAN  = src/status_page.h

# pg_regress: sql/<name>.sql against expected/<name>.out (the install scripts
# opsflags--*.sql also live in sql/, but only these are run as tests).
REGRESS      = flags evaluation guard privileges errors config audit maintenance deployments health alerts variations segments restore
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

# Every C file includes the shared header (PGXS tracks no header dependencies).
$(OBJS): src/opsflags.h
src/http.o src/http_sql.o src/http.bc src/http_sql.bc: src/http.h

# The status page, served by src/http.c, as a C string literal.
src/http.o src/http.bc: src/status_page.h
src/status_page.h: src/status_page.html
	sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/?/\\?/g' -e 's/^/"/' -e 's/$$/\\n"/' $< >$@

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
