-- Bronze: each system's exports as they arrive. Every row is kept; values that do not fit
-- land in _rescued_data. Streaming tables read only files that are new since the last update.

CREATE OR REFRESH STREAMING TABLE crm_accounts_raw
COMMENT 'CRM account exports, one row per exported version of an account'
AS SELECT * FROM STREAM read_files(
  '${data}/crm/accounts_*.csv', format => 'csv', header => true, inferColumnTypes => false);

CREATE OR REFRESH STREAMING TABLE crm_opportunities_raw
COMMENT 'CRM opportunity exports: a row when an opportunity opens and another when it closes'
AS SELECT * FROM STREAM read_files(
  '${data}/crm/opportunities_*.csv', format => 'csv', header => true, inferColumnTypes => false);

CREATE OR REFRESH STREAMING TABLE marketing_events_raw
COMMENT 'Marketing platform events (JSON lines; the 2025 export switched to epoch seconds)'
AS SELECT * FROM STREAM read_files('${data}/marketing/engagement_*.json', format => 'json',
  -- Both export versions' time columns, whichever quarters have arrived so far.
  schemaHints => 'ts STRING, event_time BIGINT, utm_source STRING');

CREATE OR REFRESH STREAMING TABLE support_tickets_raw
COMMENT 'Helpdesk ticket exports (semicolon-separated, European timestamps)'
AS SELECT * FROM STREAM read_files(
  '${data}/support/tickets_*.csv', format => 'csv', header => true, sep => ';',
  inferColumnTypes => false);
