# opsflags: PGXS build, plus the README's commands (make run / stop / test).

EXTENSION    = opsflags
MODULE_big   = opsflags
OBJS         = src/opsflags.o src/spi.o src/hashing.o src/flags.o
DATA         = $(wildcard sql/opsflags--*.sql)
PG_CPPFLAGS  = -I$(srcdir)/src
PG_CFLAGS    = -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers $(if $(WERROR),-Werror)
SHLIB_LINK   = 

# pg_regress: sql/<name>.sql against expected/<name>.out (the install scripts
# opsflags--*.sql also live in sql/, but only these are run as tests).
REGRESS      = flags evaluation errors guard
REGRESS_OPTS = --inputdir=. --load-extension=opsflags

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

.PHONY: run stop test bench
run:
	@scripts/run.sh
stop:
	@scripts/stop.sh
test:
	@scripts/test.sh
bench:
	@scripts/bench.sh
