-- Segments (evaluation step 7) and prerequisites (step 4).
\set SHOW_CONTEXT never
SELECT opsflags.create_segment('beta', 'Beta testers', '["u1", "u2"]', '["qa"]') IS NOT NULL AS created;
SELECT opsflags.create_flag('seg.a', 'A') IS NOT NULL AS a, opsflags.create_flag('seg.b', 'B') IS NOT NULL AS b,
       opsflags.create_flag('seg.c', 'C') IS NOT NULL AS c;

-- A config targets segments: members and member roles are on.
SELECT opsflags.update_flag('seg.a', '{"is_enabled": true, "enabled_percentage": 1, "segments": ["beta"]}');
SELECT u AS user_id, r AS user_role, opsflags.feature_explain('seg.a', u, r) ->> 'reason' AS reason
FROM (VALUES ('u1', NULL), ('zz', 'qa'), ('zz', NULL)) v(u, r);
-- Membership changes are seen at the next statement.
SELECT opsflags.update_segment('beta', '["u3"]');
SELECT opsflags.feature_enabled('seg.a', 'u1') AS u1, opsflags.feature_enabled('seg.a', 'u3') AS u3;

-- Prerequisites: b needs a on for the same user; c needs b on and a serving variation 0.
SELECT opsflags.toggle_flag('seg.b', true);
SELECT opsflags.add_prerequisite('seg.b', 'seg.a');
SELECT opsflags.toggle_flag('seg.c', true);
SELECT opsflags.add_prerequisite('seg.c', 'seg.b');
SELECT opsflags.add_prerequisite('seg.c', 'seg.a', 0);
SELECT u AS user_id, opsflags.feature_explain('seg.b', u) ->> 'reason' AS b,
       opsflags.feature_explain('seg.c', u) ->> 'reason' AS c
FROM unnest(ARRAY['u3', 'zz']) u;
SELECT opsflags.remove_prerequisite('seg.b', 'seg.a') AS removed;
SELECT opsflags.feature_explain('seg.b', 'zz') ->> 'reason' AS b_without_prerequisite;

-- Refused: cycles, unknown variations and segments, deep chains.
SELECT opsflags.add_prerequisite('seg.a', 'seg.c');
SELECT opsflags.add_prerequisite('seg.a', 'seg.a');
SELECT opsflags.add_prerequisite('seg.c', 'seg.a', 7);
SELECT opsflags.update_flag('seg.a', '{"segments": ["no.such.segment"]}');
SELECT opsflags.create_segment('beta', 'Again');
SELECT opsflags.update_segment('no.such.segment', '[]');
SELECT count(opsflags.create_flag('chain.' || i, 'Chain')) FROM generate_series(0, 9) i;
SELECT opsflags.add_prerequisite('chain.' || i, 'chain.' || (i + 1)) FROM generate_series(0, 7) i;
SELECT opsflags.add_prerequisite('chain.8', 'chain.9');
SELECT count(*) AS prerequisites FROM opsflags.flag_prerequisites;

-- A flag depends on at most max_prerequisite_count() prerequisites, directly
-- or through others (each is evaluated once per evaluation).
SELECT opsflags.max_prerequisite_count();
SELECT count(opsflags.create_flag('wide.' || i, 'Wide')) FROM generate_series(0, 101) i;
SELECT count(opsflags.add_prerequisite('wide.1', 'wide.' || i)) FROM generate_series(2, 100) i;
SELECT opsflags.add_prerequisite('wide.0', 'wide.1');
SELECT opsflags.add_prerequisite('wide.1', 'wide.101');
SELECT opsflags.add_prerequisite('wide.0', 'wide.101');
SELECT count(*) AS wide_prerequisites FROM opsflags.flag_prerequisites p
JOIN opsflags.feature_flags f ON f.id = p.flag_id WHERE f.flag_key LIKE 'wide.%';

-- A flag that cannot be loaded (here: a column its query reads is renamed)
-- evaluates as false with one WARNING per statement, not one per row; the
-- next statement tries again.
BEGIN;
ALTER TABLE opsflags.user_segments RENAME COLUMN user_ids TO user_ids_renamed;
SELECT i, opsflags.feature_enabled('seg.a', 'u3'), opsflags.feature_explain('seg.a', 'u3') ->> 'reason' AS reason
FROM generate_series(1, 3) i;
SELECT opsflags.feature_enabled('seg.a', 'u3') AS next_statement;
ROLLBACK;
SELECT opsflags.feature_enabled('seg.a', 'u3') AS after_rollback;
