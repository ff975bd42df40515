-- Loyalty members of the point-of-sale system as customers: no account number; emails
-- lower-cased, mobiles in E.164, so identity resolution can match them to known customers.
{{ config(materialized='incremental', unique_key=['source_system', 'source_id']) }}
SELECT
    'pos' AS source_system,
    CAST(m.member_id AS VARCHAR) AS source_id,
    CAST(NULL AS VARCHAR) AS account_number,
    trim(m.full_name) AS name,
    nullif(lower(trim(m.email)), '') AS email,
    nullif('+' || regexp_replace(m.mobile, '[^0-9]', '', 'g'), '+') AS phone,
    upper(trim(m.store_country)) AS country_code,
    CAST(NULL AS VARCHAR) AS segment,
    CAST(m.joined_at AS TIMESTAMP) AS created_at,
    CAST(m.updated_at AS TIMESTAMP) AS updated_at
FROM raw_pos.members AS m

{% changed_keys %}
SELECT 'pos' AS source_system, CAST(member_id AS VARCHAR) AS source_id FROM {{ changes('raw_pos.members') }}
