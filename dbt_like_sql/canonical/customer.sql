-- One row per real customer. Records of every system are grouped by the identity
-- resolution (customer_xref); each field takes the first non-empty value in survivorship
-- order (the ERP owns customer master data, then the CRM, then the shop).
{{ config(materialized='incremental', unique_key='customer_id') }}
WITH records AS (
    SELECT x.customer_id, x.member_rank, r.*
    FROM {{ union_staging('customer') }} AS r
    JOIN canonical.customer_xref AS x ON x.system = r.source_system AND x.source_id = r.source_id
)
SELECT
    customer_id,
    (array_agg(account_number ORDER BY member_rank) FILTER (WHERE account_number IS NOT NULL))[1] AS account_number,
    (array_agg(name ORDER BY member_rank) FILTER (WHERE name IS NOT NULL))[1] AS name,
    (array_agg(email ORDER BY member_rank) FILTER (WHERE email IS NOT NULL))[1] AS email,
    (array_agg(phone ORDER BY member_rank) FILTER (WHERE phone IS NOT NULL))[1] AS phone,
    (array_agg(country_code ORDER BY member_rank) FILTER (WHERE country_code IS NOT NULL))[1] AS country_code,
    (array_agg(segment ORDER BY member_rank) FILTER (WHERE segment IS NOT NULL))[1] AS segment,
    (array_agg(source_system ORDER BY member_rank))[1] AS source_system,
    min(created_at) AS created_at,
    max(updated_at) AS updated_at
FROM records
GROUP BY customer_id

{% changed_keys %}
-- customers whose records changed, and every customer id the identity resolution gave or took
SELECT customer_id FROM {{ changes('canonical.customer_xref') }}
UNION ALL
SELECT x.customer_id
FROM {{ union_changes('customer') }} AS k
JOIN canonical.customer_xref AS x ON x.system = k.source_system AND x.source_id = k.source_id
