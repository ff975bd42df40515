-- Web-shop customers: no account number; the name is first and last name joined.
{{ config(materialized='incremental', unique_key=['source_system', 'source_id']) }}
SELECT
    'shop' AS source_system,
    CAST(s.id AS VARCHAR) AS source_id,
    CAST(NULL AS VARCHAR) AS account_number,
    trim(trim(s.first_name) || ' ' || trim(s.last_name)) AS name,
    nullif(lower(trim(s.email)), '') AS email,
    nullif('+' || regexp_replace(s.phone, '[^0-9]', '', 'g'), '+') AS phone,
    upper(trim(s.country_code)) AS country_code,
    CAST(NULL AS VARCHAR) AS segment,
    CAST(s.created_at AS TIMESTAMP) AS created_at,
    CAST(s.updated_at AS TIMESTAMP) AS updated_at
FROM raw_shop.customers AS s

{% changed_keys %}
SELECT 'shop' AS source_system, CAST(id AS VARCHAR) AS source_id FROM {{ changes('raw_shop.customers') }}
