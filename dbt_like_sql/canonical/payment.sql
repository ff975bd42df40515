-- Payments, the latest version of each.
{{ config(materialized='incremental', unique_key='payment_id') }}
SELECT DISTINCT ON (p.payment_id) p.*
FROM {{ union_staging('payment') }} AS p
ORDER BY p.payment_id, p.updated_at DESC

{% changed_keys %}
SELECT payment_id FROM {{ union_changes('payment') }} AS k
