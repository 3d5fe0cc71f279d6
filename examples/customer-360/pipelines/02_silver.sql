-- Silver: standardise each system's quirks, deduplicate, and resolve one customer identity
-- across CRM, marketing and support.

-- Dates arrive as 2024-03-05, 03/05/2024 or 20240305.
CREATE TEMPORARY VIEW crm_accounts_typed AS
SELECT
  nullif(upper(trim(account_id)), '') AS account_id,
  trim(company) AS company,
  segment,
  region,
  trim(contact_name) AS contact_name,
  nullif(lower(trim(contact_email)), '') AS email,
  nullif(right(translate(phone, '()-.+ ', ''), 10), '') AS phone,
  CASE
    WHEN created_date LIKE '____-__-__' THEN TRY_CAST(created_date AS DATE)
    WHEN created_date LIKE '__/__/____' THEN TRY_CAST(concat(substr(created_date, 7, 4), '-',
      substr(created_date, 1, 2), '-', substr(created_date, 4, 2)) AS DATE)
    WHEN created_date LIKE '________' THEN TRY_CAST(concat(substr(created_date, 1, 4), '-',
      substr(created_date, 5, 2), '-', substr(created_date, 7, 2)) AS DATE)
  END AS created_date,
  TRY_CAST(last_modified AS TIMESTAMP) AS last_modified
FROM STREAM(crm_accounts_raw);

CREATE OR REFRESH STREAMING TABLE account_versions (
  CONSTRAINT valid_account_id EXPECT (account_id IS NOT NULL) ON VIOLATION DROP ROW,
  CONSTRAINT valid_created_date EXPECT (created_date IS NOT NULL),
  CONSTRAINT reachable EXPECT (email IS NOT NULL OR phone IS NOT NULL)
)
COMMENT 'Every exported version of every CRM account, standardised'
AS SELECT * FROM STREAM(crm_accounts_typed);

CREATE OR REFRESH MATERIALIZED VIEW customers
COMMENT 'One row per customer: the latest version of each CRM account'
AS SELECT account_id AS customer_id, company, segment, region, contact_name, email, phone,
  created_date, last_modified
FROM (
  SELECT *, row_number() OVER (PARTITION BY account_id ORDER BY last_modified DESC) AS rank
  FROM account_versions
) WHERE rank = 1;

-- Every way the three systems refer to a customer: CRM id, e-mail address, phone number.
CREATE OR REFRESH MATERIALIZED VIEW customer_keys
COMMENT 'Identity map: a normalised e-mail or phone number to the customer it belongs to'
AS SELECT DISTINCT key_type, key_value, customer_id FROM (
  SELECT 'email' AS key_type, email AS key_value, account_id AS customer_id
  FROM account_versions WHERE email IS NOT NULL
  UNION ALL
  SELECT 'phone', phone, account_id FROM account_versions WHERE phone IS NOT NULL
);

CREATE OR REFRESH STREAMING TABLE opportunity_events (
  CONSTRAINT valid_opportunity EXPECT (opportunity_id IS NOT NULL AND account_id IS NOT NULL)
    ON VIOLATION DROP ROW,
  CONSTRAINT positive_amount EXPECT (amount > 0)
)
COMMENT 'CRM opportunity rows, standardised: ids trimmed, amounts as decimals, dates parsed'
AS SELECT
  trim(opportunity_id) AS opportunity_id,
  upper(trim(account_id)) AS account_id,
  product,
  type AS opportunity_type,
  stage,
  TRY_CAST(translate(amount, '$,', '') AS DECIMAL(14, 2)) AS amount,
  CASE
    WHEN created_date LIKE '____-__-__' THEN TRY_CAST(created_date AS DATE)
    WHEN created_date LIKE '__/__/____' THEN TRY_CAST(concat(substr(created_date, 7, 4), '-',
      substr(created_date, 1, 2), '-', substr(created_date, 4, 2)) AS DATE)
    WHEN created_date LIKE '________' THEN TRY_CAST(concat(substr(created_date, 1, 4), '-',
      substr(created_date, 5, 2), '-', substr(created_date, 7, 2)) AS DATE)
  END AS created_date,
  TRY_CAST(close_date AS DATE) AS close_date,
  TRY_CAST(last_modified AS TIMESTAMP) AS last_modified
FROM STREAM(crm_opportunities_raw);

CREATE OR REFRESH MATERIALIZED VIEW opportunities
COMMENT 'One row per opportunity in its latest stage'
AS SELECT opportunity_id, account_id AS customer_id, product, opportunity_type, stage, amount,
  created_date, close_date, stage = 'Closed Won' AS won,
  stage IN ('Closed Won', 'Closed Lost') AS closed
FROM (
  SELECT *, row_number() OVER (PARTITION BY opportunity_id ORDER BY last_modified DESC) AS rank
  FROM opportunity_events
) WHERE rank = 1;

CREATE OR REFRESH STREAMING TABLE marketing_events (
  CONSTRAINT valid_event EXPECT (event_id IS NOT NULL AND event_id <> 'broken')
    ON VIOLATION DROP ROW,
  CONSTRAINT known_action EXPECT (action IN ('sent', 'open', 'click', 'attend')),
  CONSTRAINT has_time EXPECT (event_at IS NOT NULL) ON VIOLATION DROP ROW
)
COMMENT 'Marketing events, one shape for both export versions'
AS SELECT
  event_id,
  lower(trim(email)) AS email,
  campaign_id,
  campaign_name,
  channel,
  feature,
  action,
  coalesce(TRY_CAST(ts AS TIMESTAMP), TRY_CAST(from_unixtime(event_time) AS TIMESTAMP)) AS event_at
FROM STREAM(marketing_events_raw);

CREATE OR REFRESH MATERIALIZED VIEW engagement
COMMENT 'Marketing events without duplicate deliveries, resolved to customers where possible'
AS SELECT e.event_id, e.email, k.customer_id, e.campaign_id, e.campaign_name, e.channel,
  e.feature, e.action, e.event_at
FROM (
  SELECT *, row_number() OVER (PARTITION BY event_id ORDER BY event_at) AS copy
  FROM marketing_events
) e
LEFT JOIN customer_keys k ON k.key_type = 'email' AND k.key_value = e.email
WHERE e.copy = 1;

CREATE OR REFRESH STREAMING TABLE ticket_events (
  CONSTRAINT valid_ticket EXPECT (ticket_id IS NOT NULL) ON VIOLATION DROP ROW,
  CONSTRAINT csat_in_range EXPECT (csat_raw IS NULL OR csat BETWEEN 1 AND 5)
)
COMMENT 'Support tickets, standardised; requesters reduced to an e-mail or a phone number'
AS SELECT
  ticket AS ticket_id,
  CASE WHEN requester LIKE '%@%' THEN 'email' ELSE 'phone' END AS requester_type,
  CASE WHEN requester LIKE '%@%' THEN lower(trim(requester))
       ELSE right(translate(requester, '()-.+ ', ''), 10) END AS requester,
  TRY_CAST(concat(substr(opened, 7, 4), '-', substr(opened, 4, 2), '-', substr(opened, 1, 2),
    ' ', substr(opened, 12, 5), ':00') AS TIMESTAMP) AS opened_at,
  TRY_CAST(concat(substr(closed, 7, 4), '-', substr(closed, 4, 2), '-', substr(closed, 1, 2),
    ' ', substr(closed, 12, 5), ':00') AS TIMESTAMP) AS closed_at,
  priority,
  category,
  nullif(csat, '') AS csat_raw,
  TRY_CAST(csat AS INT) AS csat
FROM STREAM(support_tickets_raw);

CREATE OR REFRESH MATERIALIZED VIEW tickets
COMMENT 'Support tickets resolved to customers by e-mail or phone number'
AS SELECT t.ticket_id, k.customer_id, t.requester_type, t.opened_at, t.closed_at, t.priority,
  t.category, t.csat
FROM ticket_events t
LEFT JOIN customer_keys k ON k.key_type = t.requester_type AND k.key_value = t.requester;
