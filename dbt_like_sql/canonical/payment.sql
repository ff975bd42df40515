-- Payments, the latest version of each.
SELECT DISTINCT ON (p.payment_id) p.*
FROM {{ union_staging('payment') }} AS p
ORDER BY p.payment_id, p.updated_at DESC
