-- 003: room on every tokens page for the writer's usage updates.
--
-- The writer rewrites last_used_at and use_count of every token used in a
-- flush interval, one UPDATE for all of them.  Neither column is indexed, so
-- PostgreSQL can make each of those updates HOT (heap-only: the new row
-- version on the same page, no new entry in any of the table's six indexes)
-- as long as the page has room for it.  At the default fillfactor of 100 a
-- freshly loaded page has none, and every usage update also inserts into
-- every index: measured on 1,000,000 tokens, 30,000 rows per flush cost
-- 490 ms at fillfactor 100 and 160 ms at 70 (contrib/bench, BENCHMARKS.md).
--
-- New pages honour the setting at once.  Pages written before this
-- migration keep theirs until the table is rewritten (VACUUM FULL tokens,
-- or pg_repack), which only an existing deployment with a large table needs.

ALTER TABLE tokens SET (fillfactor = 70);
