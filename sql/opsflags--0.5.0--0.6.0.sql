-- opsflags 0.5.0 -> 0.6.0: targeting rules on any attribute of a context,
-- named variations, Unleash import and export, per-flag cache invalidation.
-- A fresh install of 0.6.0 (built from src/*.sql) and an updated one are the
-- same (test/upgrade/upgrade.sh).
\echo Use "ALTER EXTENSION opsflags UPDATE TO '0.6.0'" to load this file. \quit
