-- ERP customers, the master record of every customer the business invoices: emails
-- lower-cased, phones in E.164, country names as ISO codes.
{{ config(materialized='incremental', unique_key=['source_system', 'source_id']) }}
SELECT
    'erp' AS source_system,
    CAST(c.customer_id AS VARCHAR) AS source_id,
    nullif(trim(c.account_number), '') AS account_number,
    trim(c.name) AS name,
    nullif(lower(trim(c.email)), '') AS email,
    nullif('+' || regexp_replace(c.phone, '[^0-9]', '', 'g'), '+') AS phone,
    cc.iso_code AS country_code,
    upper(trim(c.segment)) AS segment,
    CAST(c.created_at AS TIMESTAMP) AS created_at,
    CAST(c.updated_at AS TIMESTAMP) AS updated_at,
    c._hub_deleted_at IS NOT NULL AS is_deleted,
    CAST(c._hub_deleted_at AS TIMESTAMP) AS deleted_at
FROM raw_erp.customers AS c
LEFT JOIN seeds.country_codes AS cc ON cc.country_name = upper(trim(c.country))

{% changed_keys %}
SELECT 'erp' AS source_system, CAST(customer_id AS VARCHAR) AS source_id FROM {{ changes('raw_erp.customers') }}
