-- test/pgtap/flags_logical_replication.sql: changes applied by a logical replication
-- subscription invalidate the subscriber's flag cache.
--
-- Within this one cluster (wal_level = logical, set by scripts/test.sh): a
-- publisher database and a subscriber database, both with opsflags, the flag
-- tables published and subscribed.  Session "cached" on the subscriber
-- evaluates the flag (filling its cache); a change is committed on the
-- publisher; once the replicated row is visible on the subscriber (polled
-- through a second session, "plain", that reads the table), the cached session
-- must answer with the new state on its next statement.  With publishing to
-- memcached switched on in the subscriber (and off in the publisher), the
-- apply worker's commits publish the subscriber's documents.
--
-- The publication and the subscription's options are README.md's recipe, read
-- from it (pg_prove runs in the repository): the recipe works as written.
\ir setup.inc
\set recipe `sed -n -e '/^CREATE PUBLICATION opsflags_flags/,/;$/p' -e '/^CREATE SUBSCRIPTION opsflags_flags/,/;$/p' README.md`
\set readme_wal_level `grep -c 'wal_level = logical' README.md`

SELECT plan(18);

SELECT ok(:'readme_wal_level'::int > 0 AND current_setting('wal_level') = 'logical',
          'README: the recipe says wal_level = logical (which this cluster has)');
SELECT is(substring(:'recipe' FROM 'CREATE SUBSCRIPTION[^;]* WITH \(([^)]*)\);'), 'copy_data = false',
          'README: the recipe subscribes WITH (copy_data = false)');

-- Fresh databases (leftovers of an interrupted run are dropped first).
SELECT dblink_connect('admin', pg_temp.tap_conninfo(db => 'postgres')) \gset
SELECT dblink_exec('admin', 'DROP DATABASE IF EXISTS opsflags_lr_sub WITH (FORCE)') \gset
SELECT count(*) FROM dblink('admin', $$SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
                                      WHERE slot_name = 'opsflags_lr'$$) AS t(x text) \gset
SELECT dblink_exec('admin', 'DROP DATABASE IF EXISTS opsflags_lr_pub WITH (FORCE)') \gset
SELECT dblink_exec('admin', 'CREATE DATABASE opsflags_lr_pub') \gset
SELECT dblink_exec('admin', 'CREATE DATABASE opsflags_lr_sub') \gset

SELECT dblink_connect('pub', pg_temp.tap_conninfo(db => 'opsflags_lr_pub')) \gset
SELECT dblink_connect('plain', pg_temp.tap_conninfo(db => 'opsflags_lr_sub')) \gset
SELECT dblink_exec('pub', 'CREATE EXTENSION opsflags') \gset
SELECT dblink_exec('plain', 'CREATE EXTENSION opsflags') \gset
-- The README's publication, as written.
SELECT dblink_exec('pub', substring(:'recipe' FROM '(CREATE PUBLICATION[^;]*);')) \gset
-- Same cluster: the slot must exist before CREATE SUBSCRIPTION (which would
-- otherwise wait for itself); otherwise the README's subscription options.
SELECT count(*) FROM dblink('pub', $$SELECT pg_create_logical_replication_slot('opsflags_lr', 'pgoutput')$$)
    AS t(x text) \gset
SELECT dblink_exec('plain', format('CREATE SUBSCRIPTION opsflags_sub CONNECTION %L PUBLICATION opsflags_flags '
                                   'WITH (create_slot = false, slot_name = opsflags_lr, %s)',
                                   pg_temp.tap_conninfo(db => 'opsflags_lr_pub'),
                                   substring(:'recipe' FROM 'CREATE SUBSCRIPTION[^;]* WITH \(([^)]*)\);'))) \gset

SELECT dblink_connect('cached', pg_temp.tap_conninfo(db => 'opsflags_lr_sub')) \gset

-- Publishing to memcached: on in the subscriber only (app_config is not
-- replicated here), so whatever memcached holds came from the subscriber.
SELECT count(*) FROM dblink('plain', $$SELECT opsflags.config_set('flags.publish_to_memcached', 'true')$$)
    AS t(x text) \gset

-- Wait (bounded, 10 s) until memcached holds the subscriber's current
-- document for production, and it has flag lr.flag with the given value.
CREATE FUNCTION pg_temp.wait_for_published(want jsonb) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    deadline timestamptz := clock_timestamp() + interval '10 seconds';
    ok boolean;
BEGIN
    LOOP
        SELECT v INTO ok FROM dblink('plain', format(
            $q$SELECT d IS NOT DISTINCT FROM opsflags.flags_for_environment('production')
                      AND d -> 'lr.flag' -> 'value' = %L::jsonb
               FROM opsflags.published_flags('production') AS d$q$, want)) AS t(v boolean);
        IF ok THEN RETURN true; END IF;
        IF clock_timestamp() > deadline THEN RETURN false; END IF;
        PERFORM pg_sleep(0.02);
    END LOOP;
END $$;

-- Evaluate in the cached session (one statement there per call).
CREATE FUNCTION pg_temp.cached_enabled(flag_key text, user_id text DEFAULT NULL) RETURNS boolean
LANGUAGE sql AS $$
  SELECT v FROM dblink('cached', format('SELECT opsflags.feature_enabled(%L, %L)', flag_key, user_id))
      AS t(v boolean)
$$;

-- Wait (bounded, 60 s) until the subscriber's tables show a state: polls a
-- query in the plain session, which reads the table and has no cache.
CREATE FUNCTION pg_temp.wait_for_subscriber(query text) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    deadline timestamptz := clock_timestamp() + interval '60 seconds';
    ok boolean;
BEGIN
    LOOP
        -- The change is visible, and the apply worker's transaction is over:
        -- its commit is visible to others a moment before the commit's
        -- post-processing (which announces what changed to the caches) has
        -- run.
        SELECT v INTO ok FROM dblink('plain', format(
            $q$SELECT (%s) AND NOT EXISTS (SELECT 1 FROM pg_stat_activity
                                           WHERE backend_type LIKE 'logical replication%%worker'
                                             AND xact_start IS NOT NULL)$q$, query)) AS t(v boolean);
        IF ok THEN RETURN true; END IF;
        IF clock_timestamp() > deadline THEN RETURN false; END IF;
        PERFORM pg_sleep(0.02);
    END LOOP;
END $$;

-- Run an expression for its effect in the publisher (committed at once).
CREATE FUNCTION pg_temp.pub(expr text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM dblink_exec('pub', 'DO $do$BEGIN PERFORM ' || expr || '; END$do$');
END $$;

-- Read a configuration key in the cached session.
CREATE FUNCTION pg_temp.cached_config(config_key text) RETURNS text
LANGUAGE sql AS $$
  SELECT v FROM dblink('cached', format('SELECT opsflags.config_get(%L, ''all'')::text', config_key)) AS t(v text)
$$;

-- 1. The flag and the key do not exist yet: the cached session caches that.
SELECT is(pg_temp.cached_enabled('lr.flag', 'u1'), false, 'subscriber: unknown flag is off');
SELECT is(pg_temp.cached_config('lr.key'), NULL, 'subscriber: unknown configuration key is null');

-- 2. Created and switched on at the publisher.
SELECT pg_temp.pub($$opsflags.create_flag('lr.flag', 'Replicated')$$) \gset
SELECT pg_temp.pub($$opsflags.toggle_flag('lr.flag', true)$$) \gset
SELECT ok(pg_temp.wait_for_subscriber($$SELECT EXISTS (SELECT 1 FROM opsflags.feature_flag_configs c
    JOIN opsflags.feature_flags f ON f.id = c.flag_id
    WHERE f.flag_key = 'lr.flag' AND c.environment = 'production' AND c.is_enabled)$$),
    'the toggle is replicated');
SELECT is(pg_temp.cached_enabled('lr.flag', 'u1'), true,
          'subscriber: the cached session sees the replicated toggle on its next statement');
SELECT ok(pg_temp.wait_for_published('true'),
          'subscriber: the applied toggle is published to memcached');

-- 3. Targeting changed at the publisher.
SELECT pg_temp.pub($$opsflags.update_flag('lr.flag', '{"enabled_for_users": ["u1"], "enabled_percentage": 1}')$$) \gset
SELECT ok(pg_temp.wait_for_subscriber($$SELECT EXISTS (SELECT 1 FROM opsflags.feature_flag_configs c
    JOIN opsflags.feature_flags f ON f.id = c.flag_id
    WHERE f.flag_key = 'lr.flag' AND c.environment = 'production' AND c.enabled_percentage = 1)$$),
    'the targeting change is replicated');
SELECT is(pg_temp.cached_enabled('lr.flag', 'u1') AND NOT pg_temp.cached_enabled('lr.flag', 'nobody-in-bucket-1'),
          true, 'subscriber: targeted user on, others off, per the replicated config');
SELECT ok(pg_temp.wait_for_published('false'),
          'subscriber: the applied targeting change is published to memcached');

-- 3b. A segment created at the publisher and targeted by the config.
SELECT pg_temp.pub($$opsflags.create_segment('lr.beta', 'Beta', '["nobody-in-bucket-1"]')$$) \gset
SELECT pg_temp.pub($$opsflags.update_flag('lr.flag', '{"segments": ["lr.beta"]}')$$) \gset
SELECT ok(pg_temp.wait_for_subscriber($$SELECT EXISTS (SELECT 1 FROM opsflags.feature_flag_configs c
    JOIN opsflags.feature_flags f ON f.id = c.flag_id
    WHERE f.flag_key = 'lr.flag' AND c.environment = 'production' AND c.segments = '["lr.beta"]')$$),
    'the segment and the config targeting it are replicated');
SELECT is(pg_temp.cached_enabled('lr.flag', 'nobody-in-bucket-1'), true,
          'subscriber: the segment''s member is on');

-- 3c. Configuration set at the publisher.
SELECT pg_temp.pub($$opsflags.config_set('lr.key', '"v1"')$$) \gset
SELECT ok(pg_temp.wait_for_subscriber($$SELECT EXISTS (SELECT 1 FROM opsflags.app_config
    WHERE config_key = 'lr.key' AND environment = 'all')$$),
    'the configuration value is replicated');
SELECT is(pg_temp.cached_config('lr.key'), '"v1"', 'subscriber: config_get in the cached session sees it');

-- 4. Switched off at the publisher.
SELECT pg_temp.pub($$opsflags.toggle_flag('lr.flag', false)$$) \gset
SELECT ok(pg_temp.wait_for_subscriber($$SELECT EXISTS (SELECT 1 FROM opsflags.feature_flag_configs c
    JOIN opsflags.feature_flags f ON f.id = c.flag_id
    WHERE f.flag_key = 'lr.flag' AND c.environment = 'production' AND NOT c.is_enabled)$$),
    'the switch-off is replicated');
SELECT is(pg_temp.cached_enabled('lr.flag', 'u1'), false,
          'subscriber: the cached session sees the replicated switch-off on its next statement');
SELECT ok(pg_temp.wait_for_published('false'),
          'subscriber: the applied switch-off is published to memcached');

-- The replicated rows keep the publisher's version (the subscriber's own
-- version trigger does not fire for applied changes).
SELECT is((SELECT v FROM dblink('plain', $$SELECT c.version FROM opsflags.feature_flag_configs c
            JOIN opsflags.feature_flags f ON f.id = c.flag_id
            WHERE f.flag_key = 'lr.flag' AND c.environment = 'production'$$) AS t(v int)),
          (SELECT v FROM dblink('pub', $$SELECT c.version FROM opsflags.feature_flag_configs c
            JOIN opsflags.feature_flags f ON f.id = c.flag_id
            WHERE f.flag_key = 'lr.flag' AND c.environment = 'production'$$) AS t(v int)),
          'subscriber rows carry the publisher''s versions');

SELECT * FROM finish();

-- Tear down: detach the subscription from its slot, then drop everything.
SELECT dblink_disconnect('cached') \gset
SELECT dblink_exec('plain', 'ALTER SUBSCRIPTION opsflags_sub DISABLE') \gset
SELECT dblink_exec('plain', 'ALTER SUBSCRIPTION opsflags_sub SET (slot_name = NONE)') \gset
SELECT dblink_exec('plain', 'DROP SUBSCRIPTION opsflags_sub') \gset
SELECT dblink_disconnect('plain') \gset
SELECT dblink_disconnect('pub') \gset
SELECT dblink_exec('admin', 'DROP DATABASE opsflags_lr_sub WITH (FORCE)') \gset
-- The walsender may still hold the slot for a moment: wait until it is free.
DO $$
DECLARE deadline timestamptz := clock_timestamp() + interval '30 seconds';
BEGIN
    WHILE EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = 'opsflags_lr' AND active)
          AND clock_timestamp() < deadline LOOP
        PERFORM pg_sleep(0.02);
    END LOOP;
END $$;
SELECT count(*) FROM dblink('admin', $$SELECT pg_drop_replication_slot('opsflags_lr')$$) AS t(x text) \gset
SELECT dblink_exec('admin', 'DROP DATABASE opsflags_lr_pub WITH (FORCE)') \gset
SELECT dblink_disconnect('admin') \gset
