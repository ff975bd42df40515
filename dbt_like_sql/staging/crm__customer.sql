-- CRM accounts as customers: the account number is the ERP's, when the CRM has one.
{{ config(materialized='incremental', unique_key=['source_system', 'source_id']) }}
SELECT
    'crm' AS source_system,
    a.id AS source_id,
    nullif(trim(a.account_number), '') AS account_number,
    trim(a.name) AS name,
    nullif(lower(trim(a.email__c)), '') AS email,
    nullif('+' || regexp_replace(a.phone, '[^0-9]', '', 'g'), '+') AS phone,
    cc.iso_code AS country_code,
    upper(trim(a.industry)) AS segment,
    CAST(a.created_date AS TIMESTAMP) AS created_at,
    CAST(a.last_modified_date AS TIMESTAMP) AS updated_at,
    a._hub_deleted_at IS NOT NULL AS is_deleted,
    CAST(a._hub_deleted_at AS TIMESTAMP) AS deleted_at
FROM raw_crm.accounts AS a
LEFT JOIN seeds.country_codes AS cc ON cc.country_name = upper(trim(a.billing_country))

{% changed_keys %}
SELECT 'crm' AS source_system, id AS source_id FROM {{ changes('raw_crm.accounts') }}
