-- 0005: the ids of intent families merged into a cluster's family (issue #10: "the old id stays an
-- alias; history is never rewritten"). Never edit once merged: add 0006_*.sql instead.
--
-- Interactions keep the family id they were scored with; a family that later merged into an
-- older one is found through the surviving family's aliases (Store.list_families matches a
-- family id or any of its aliases). Rows written before this migration read back with none.
ALTER TABLE clusters ADD COLUMN IF NOT EXISTS family_aliases Array(String) AFTER family_category;
