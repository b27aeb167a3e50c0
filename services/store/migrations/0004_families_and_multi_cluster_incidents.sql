-- 0004: intent families and incidents that span several clusters (issue #10, "one pattern, one
-- incident"). Never edit once merged: add 0005_*.sql instead.
--
-- Every new column is added with a default, so rows written before this migration read back as
-- a pipeline without families would have written them: no family, a cluster-level incident with
-- no member list (its blast radius is its one cluster since onset, as before).
--
-- Statements are ordered so that re-running this file after it stopped half-way is safe, with
-- writers stopped (faithwatch migrates at start-up, before it writes): ADD COLUMN IF NOT EXISTS,
-- and the two views are dropped before the tables they read change, then created again.

-- The deduplicating view forwards SELECT * of interactions_in, expanded to the columns the
-- staging table had when the view was created: drop it before the column is added, create it
-- again (below) once interactions and interactions_in both have it. No insert may run meanwhile.
DROP VIEW IF EXISTS interactions_in_mv;

-- The intent family of the answer's cluster when it was scored (pipelines.family).
ALTER TABLE interactions ADD COLUMN IF NOT EXISTS family_id Nullable(String) AFTER incident_id;

-- 0003: "A migration that adds a column to interactions must add it here too (and recreate
-- interactions_in_mv)". Same name, type and place.
ALTER TABLE interactions_in ADD COLUMN IF NOT EXISTS family_id Nullable(String) AFTER incident_id;

-- The same view as 0003's, now forwarding family_id too.
CREATE MATERIALIZED VIEW IF NOT EXISTS interactions_in_mv TO interactions AS
SELECT *
FROM interactions_in
WHERE interaction_id NOT IN (
    SELECT interaction_id
    FROM interactions
    WHERE timestamp >= (SELECT min(timestamp) FROM interactions_in)
      AND timestamp <= (SELECT max(timestamp) FROM interactions_in)
      AND interaction_id IN (SELECT interaction_id FROM interactions_in)
)
LIMIT 1 BY interaction_id;

-- A cluster's family as of its latest upsert: the family id (its oldest member's number), its
-- readable label and its one category. Families are read from here (Store.list_families: one
-- row per family_id over clusters FINAL), so every backend has them without a pipeline.
ALTER TABLE clusters ADD COLUMN IF NOT EXISTS family_id Nullable(String) AFTER last_seen;

ALTER TABLE clusters ADD COLUMN IF NOT EXISTS family_label Nullable(String) AFTER family_id;

ALTER TABLE clusters ADD COLUMN IF NOT EXISTS family_category LowCardinality(Nullable(String)) AFTER family_label;

-- The incidents view is SELECT * over incident_events, fixed when it was created (0001): drop it
-- before the columns change and create it again below.
DROP VIEW IF EXISTS incidents;

-- level: the test that opened the incident ('cluster' or 'family'); clusters: every member
-- cluster id in join order (cluster_id is the first; empty on rows older than 0004);
-- clusters_added: what this event adds; family_ids: the members' families.
ALTER TABLE incident_events ADD COLUMN IF NOT EXISTS level LowCardinality(String) DEFAULT 'cluster' AFTER examples;

ALTER TABLE incident_events ADD COLUMN IF NOT EXISTS clusters Array(String) AFTER level;

ALTER TABLE incident_events ADD COLUMN IF NOT EXISTS clusters_added Array(String) AFTER clusters;

ALTER TABLE incident_events ADD COLUMN IF NOT EXISTS family_ids Array(String) AFTER clusters_added;

-- Nested objects are JSON text, like suggested_gate, shared_documents and examples: members is
-- a JSON array of IncidentMember objects ('[]' on older rows), cause one SharedDocument or NULL.
ALTER TABLE incident_events ADD COLUMN IF NOT EXISTS members String DEFAULT '[]' AFTER family_ids;

ALTER TABLE incident_events ADD COLUMN IF NOT EXISTS cause Nullable(String) AFTER members;

-- The members' cluster ids and the start of each one's blast radius (its `since`), as parallel
-- arrays SQL can read without parsing JSON: the blast radius of an incident is the
-- below-baseline answers of member_clusters[i] from member_since[i] to the resolution
-- (Store.incident_sessions). Empty on older rows, read there as [cluster_id] since onset_at.
ALTER TABLE incident_events ADD COLUMN IF NOT EXISTS member_clusters Array(String) AFTER cause;

ALTER TABLE incident_events ADD COLUMN IF NOT EXISTS member_since Array(DateTime64(3, 'UTC')) AFTER member_clusters;

-- 0001's view, unchanged but for the columns it now carries.
CREATE VIEW IF NOT EXISTS incidents AS
SELECT *
FROM incident_events FINAL
ORDER BY sequence DESC
LIMIT 1 BY incident_id;
