-- `stagecast jobs list`: newest first, live jobs and, when $1 is NULL or holds 'done', the
-- archive of done jobs. The filter is stagecast.admin_job_matches, shared with the replay and
-- cancel functions, so a list shows exactly what they would act on.
-- $1 statuses (NULL: every status), $2 kind, $3 pixel, $4 customer id, $5 created since,
-- $6 limit. Each branch walks its primary key backwards and stops at the limit, so listing
-- stays cheap on a large archive unless the filter matches only a few old rows.
SELECT id, kind, status, attempts, max_attempts, customer_id, destinations, run_at, last_error, note,
       created_at, finished_at
  FROM ((SELECT j.id, j.kind, j.status, j.attempts, j.max_attempts, j.customer_id, j.destinations,
                j.run_at, j.last_error, NULL::text AS note, j.created_at, j.finished_at
           FROM stagecast.jobs j
          WHERE ($1::text[] IS NULL OR j.status = ANY ($1::text[]))
            AND stagecast.admin_job_matches($2, $3, $4, $5, j.kind, j.destinations, j.customer_id, j.created_at)
          ORDER BY j.id DESC
          LIMIT $6)
        UNION ALL
        (SELECT a.id, a.kind, a.outcome, a.attempts, NULL::integer, a.customer_id, a.destinations,
                NULL::timestamptz, NULL::text, a.note, a.created_at, a.finished_at
           FROM stagecast.job_archive a
          WHERE ($1::text[] IS NULL OR 'done' = ANY ($1::text[]))
            AND stagecast.admin_job_matches($2, $3, $4, $5, a.kind, a.destinations, a.customer_id, a.created_at)
          ORDER BY a.id DESC
          LIMIT $6)) listed
 ORDER BY id DESC
 LIMIT $6
