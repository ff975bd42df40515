-- Invoices, the latest version of each, with the canonical customer found by billing email
-- and the canonical order of the ERP order number billing refers to.
{{ config(materialized='incremental', unique_key='invoice_id') }}
SELECT DISTINCT ON (i.invoice_id)
    i.invoice_id,
    i.invoice_number,
    coalesce(x.order_id, i.order_id) AS order_id,
    i.customer_email,
    i.currency,
    i.amount,
    i.fx_rate,
    i.amount_usd,
    i.amount_paid_usd,
    i.status,
    i.invoice_date,
    i.source_system,
    i.updated_at,
    c.customer_id
FROM {{ union_staging('invoice') }} AS i
LEFT JOIN canonical.order_xref AS x ON x.source_order_id = i.order_id
LEFT JOIN canonical.customer AS c ON c.email = i.customer_email
ORDER BY i.invoice_id, i.updated_at DESC, c.customer_id

{% changed_keys %}
-- invoices that changed, whose order's id changed, or whose customer (before or now) changed
SELECT invoice_id FROM {{ union_changes('invoice') }} AS k
UNION ALL
SELECT i.invoice_id
FROM {{ union_staging('invoice') }} AS i
JOIN canonical.order_xref AS x ON x.source_order_id = i.order_id
WHERE x.order_id IN (SELECT order_id FROM {{ changes('canonical.order_xref') }})
UNION ALL
SELECT invoice_id FROM canonical.invoice
WHERE customer_id IN (SELECT customer_id FROM {{ changes('canonical.customer') }})
UNION ALL
SELECT i.invoice_id
FROM {{ union_staging('invoice') }} AS i
JOIN canonical.customer AS c ON c.email = i.customer_email
WHERE c.customer_id IN (SELECT customer_id FROM {{ changes('canonical.customer') }})
