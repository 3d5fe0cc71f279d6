-- Gold: the questions the business asks of one customer view.

-- Which campaigns influence opportunities? An opportunity is influenced by a campaign when
-- the customer clicked or attended it in the 90 days before the opportunity was created.
CREATE OR REFRESH MATERIALIZED VIEW campaign_influence
COMMENT 'Per campaign: customers engaged, opportunities they opened within 90 days, and revenue won'
AS WITH engaged AS (
  SELECT campaign_id, campaign_name, feature, customer_id, min(event_at) AS first_engaged
  FROM engagement
  WHERE action IN ('click', 'attend') AND customer_id IS NOT NULL
  GROUP BY campaign_id, campaign_name, feature, customer_id
), influenced AS (
  SELECT e.campaign_id, o.opportunity_id, o.amount, o.won
  FROM engaged e
  JOIN opportunities o
    ON o.customer_id = e.customer_id
   AND o.opportunity_type = 'New Business'
   AND CAST(o.created_date AS TIMESTAMP) >= e.first_engaged
   AND CAST(o.created_date AS TIMESTAMP) < e.first_engaged + INTERVAL '90' DAY
)
SELECT e.campaign_id, e.campaign_name, e.feature,
  count(DISTINCT e.customer_id) AS engaged_customers,
  count(DISTINCT i.opportunity_id) AS influenced_opportunities,
  round(CAST(count(DISTINCT i.opportunity_id) AS DOUBLE) / count(DISTINCT e.customer_id), 3) AS opportunities_per_engaged,
  coalesce(sum(CASE WHEN i.won THEN i.amount END), 0) AS influenced_revenue_won
FROM engaged e
LEFT JOIN influenced i ON i.campaign_id = e.campaign_id
GROUP BY e.campaign_id, e.campaign_name, e.feature;

-- Do customers with frequent support tickets renew less?
CREATE OR REFRESH MATERIALIZED VIEW renewals_by_support_load
COMMENT 'Renewal win rate by the number of support tickets in the year before the renewal'
AS WITH renewals AS (
  SELECT o.opportunity_id, o.won, count(t.ticket_id) AS tickets
  FROM opportunities o
  LEFT JOIN tickets t
    ON t.customer_id = o.customer_id
   AND t.opened_at < CAST(o.created_date AS TIMESTAMP)
   AND t.opened_at >= CAST(o.created_date AS TIMESTAMP) - INTERVAL '365' DAY
  WHERE o.opportunity_type = 'Renewal' AND o.closed
  GROUP BY o.opportunity_id, o.won
)
SELECT
  CASE WHEN tickets = 0 THEN '0'
       WHEN tickets <= 2 THEN '1-2'
       WHEN tickets <= 5 THEN '3-5'
       WHEN tickets <= 9 THEN '6-9'
       ELSE '10+' END AS tickets_in_prior_year,
  min(tickets) AS bucket_floor,
  count(*) AS renewals,
  sum(CASE WHEN won THEN 1 ELSE 0 END) AS renewed,
  round(avg(CASE WHEN won THEN 1.0 ELSE 0.0 END), 3) AS renewal_rate
FROM renewals
GROUP BY 1;

-- Which segments respond to which product features?
CREATE OR REFRESH MATERIALIZED VIEW segment_feature_response
COMMENT 'Per segment and promoted feature: reach, clicks and click-through rate'
AS SELECT c.segment, e.feature,
  count(DISTINCT CASE WHEN e.action = 'sent' THEN e.event_id END) AS sent,
  count(DISTINCT CASE WHEN e.action IN ('click', 'attend') THEN e.event_id END) AS responses,
  round(CAST(count(DISTINCT CASE WHEN e.action IN ('click', 'attend') THEN e.event_id END) AS DOUBLE)
    / count(DISTINCT CASE WHEN e.action = 'sent' THEN e.event_id END), 4) AS response_rate
FROM engagement e
JOIN customers c ON c.customer_id = e.customer_id
GROUP BY c.segment, e.feature;

-- The customer 360 itself: one row per customer with what every system knows.
CREATE OR REFRESH MATERIALIZED VIEW customer_360
COMMENT 'One row per customer across CRM, marketing and support'
AS SELECT c.customer_id, c.company, c.segment, c.region, c.email, c.phone, c.created_date,
  coalesce(o.opportunities, 0) AS opportunities,
  coalesce(o.won_revenue, 0) AS won_revenue,
  coalesce(m.responses, 0) AS campaign_responses,
  m.last_engaged,
  coalesce(t.tickets, 0) AS tickets,
  t.avg_csat
FROM customers c
LEFT JOIN (
  SELECT customer_id, count(*) AS opportunities,
    sum(CASE WHEN won THEN amount ELSE 0 END) AS won_revenue
  FROM opportunities GROUP BY customer_id
) o ON o.customer_id = c.customer_id
LEFT JOIN (
  SELECT customer_id, count(*) AS responses, max(event_at) AS last_engaged
  FROM engagement WHERE action IN ('click', 'attend') GROUP BY customer_id
) m ON m.customer_id = c.customer_id
LEFT JOIN (
  SELECT customer_id, count(*) AS tickets, round(avg(csat), 2) AS avg_csat
  FROM tickets GROUP BY customer_id
) t ON t.customer_id = c.customer_id;
