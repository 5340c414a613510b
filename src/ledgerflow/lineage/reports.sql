-- Named queries of the lineage reports (ledgerflow/lineage/reports.py).

-- name: rules
-- Every rule's newest version with its justifications, in evaluation order, and how many
-- messages each version of it filtered in the window.
SELECT DISTINCT ON (r.id) r.name, v.version, v.enabled, v.condition, v.technical,
       v.functional, v.owner, v.changed_by, v.changed_at,
       (SELECT coalesce(sum(f.filtered), 0)
        FROM ledgerflow.batch_filters AS f
        JOIN ledgerflow.rule_versions AS w ON w.id = f.rule_version_id
        JOIN ledgerflow.batches AS b ON b.id = f.batch_id
        WHERE w.rule_id = r.id
          AND b.committed_at >= %(since)s AND b.committed_at < %(until)s)::bigint AS filtered
FROM ledgerflow.rules AS r
JOIN ledgerflow.rule_versions AS v ON v.rule_id = r.id
ORDER BY r.id, v.version DESC;
