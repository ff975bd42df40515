-- Invoices, the latest version of each, with the canonical customer found by billing email.
SELECT DISTINCT ON (i.invoice_id) i.*, c.customer_id
FROM {{ union_staging('invoice') }} AS i
LEFT JOIN canonical.customer AS c ON c.email = i.customer_email
ORDER BY i.invoice_id, i.updated_at DESC, c.customer_id
