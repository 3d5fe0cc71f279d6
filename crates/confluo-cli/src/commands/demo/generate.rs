//! The deterministic generator of customer-360's raw files.
//!
//! Three "systems" export files per quarter (2024 Q1 .. 2025 Q4), each with its own ids,
//! formats and quirks:
//! - CRM (CSV): accounts, re-exported whenever they change, and opportunities, exported when
//!   created and again when closed; ids sometimes in lower case with stray spaces; dates in
//!   three formats; amounts with and without `$` and thousands separators.
//! - Marketing (newline-delimited JSON): campaign events keyed by e-mail address as typed
//!   (mixed case, spaces); duplicate deliveries; from 2025 the export switched from a `ts`
//!   string to `event_time` epoch seconds and added `utm_source`.
//! - Support (`;`-separated CSV): tickets keyed by the requester's e-mail or phone number, in
//!   several phone formats, with European timestamps and a free-text satisfaction score.
//!
//! Some records arrive a quarter late, a few are broken. Every account's whole history
//! comes from its own random stream, so the data does not depend on how many quarters are
//! written, and writing more quarters later adds files without touching the old ones.
//! Known signals are planted so the gold answers are meaningful: some campaigns lead to
//! opportunities far more often than others, customers with many tickets renew less, and
//! each segment responds to different product features.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use chrono::{Datelike, Duration, NaiveDate, NaiveDateTime};
use serde::Serialize;

/// Quarters the example covers: 2024 Q1 .. 2025 Q4.
pub const QUARTERS: u32 = 8;
/// Accounts at scale 1 (about half a million raw rows, 110 MB, over all files).
const ACCOUNTS_PER_SCALE: f64 = 12_000.0;
/// Days covered.
const DAYS: i64 = 731;

/// What to generate.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Size: 1 is about half a million raw rows; linear.
    pub scale: f64,
    /// How many quarters of exports to write (1..=8).
    pub quarters: u32,
    /// The random seed.
    pub seed: u64,
}

/// What was generated: the files written and the true figures, for checks.
#[derive(Debug, Default, Serialize)]
pub struct Truth {
    /// Files written now (files already present are kept as they are).
    pub files_written: usize,
    /// Raw rows over all files (lines, for the files of the quarters asked for).
    pub raw_rows: u64,
    /// Bytes over all files.
    pub raw_bytes: u64,
    /// Accounts that exist in the exported quarters.
    pub accounts: u64,
    /// Distinct opportunities exported.
    pub opportunities: u64,
    /// Distinct marketing events exported (duplicate deliveries not counted).
    pub engagement_events: u64,
    /// Of those, events of known customers (the rest are prospects not in the CRM).
    pub engagement_events_of_customers: u64,
    /// Distinct support tickets exported.
    pub tickets: u64,
    /// Of those, tickets whose requester is a known customer.
    pub tickets_of_customers: u64,
    /// Records broken on purpose (bad JSON, missing ids).
    pub broken_records: u64,
}

/// SplitMix64: small, fast and the same everywhere.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    /// A stream from a seed.
    pub fn new(seed: u64) -> Self {
        let mut r = Rng(seed);
        r.next();
        r
    }
    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
    /// One of `items`.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

const SEGMENTS: &[&str] = &["SMB", "Mid-Market", "Enterprise"];
const REGIONS: &[&str] = &["NA", "EMEA", "APAC", "LATAM"];
const FEATURES: &[&str] = &[
    "Dashboards",
    "Alerts",
    "Connectors",
    "Governance",
    "AI Assistant",
];
/// The product each feature sells.
const PRODUCT_OF_FEATURE: &[&str] = &["Insights", "Insights", "Integrate", "Govern", "Copilot"];
/// Which features each segment cares about (index into FEATURES).
const AFFINITY: &[&[usize]] = &[&[0, 1], &[2, 4], &[3, 2]];
const CHANNELS: &[&str] = &["email", "webinar", "paid-social", "email", "event"];
const FIRST: &[&str] = &[
    "maria", "james", "li", "fatima", "olga", "pedro", "aisha", "tom", "yuki", "lucas", "emma",
    "noah", "sofia", "omar", "ana", "ivan",
];
const LAST: &[&str] = &[
    "garcia", "smith", "chen", "khan", "ivanova", "silva", "okafor", "brown", "tanaka", "martin",
    "rossi", "nguyen", "mueller", "haddad", "costa", "novak",
];
const ADJ: &[&str] = &[
    "Blue", "Silver", "North", "Bright", "Rapid", "Quiet", "Green", "Iron", "Clear", "Golden",
];
const NOUN: &[&str] = &[
    "Harbor", "Peak", "River", "Forge", "Field", "Stone", "Bridge", "Cloud", "Arrow", "Cedar",
];
const SUFFIX: &[&str] = &[
    "Labs",
    "Inc",
    "GmbH",
    "Systems",
    "Group",
    "Logistics",
    "Health",
];
const PRIORITIES: &[&str] = &["low", "normal", "normal", "high", "urgent"];
const CATEGORIES: &[&str] = &["billing", "bug", "how-to", "outage", "feature-request"];

/// A marketing campaign: its window, channel and the feature it promotes.
struct Campaign {
    id: String,
    name: String,
    channel: &'static str,
    feature: usize,
    start: i64,
    /// How strongly an engaged customer goes on to open an opportunity.
    influence: f64,
}

fn campaigns(seed: u64) -> Vec<Campaign> {
    let mut rng = Rng::new(seed ^ 0xCA4D_A16E);
    (0..40)
        .map(|k| {
            let feature = k % FEATURES.len();
            // A few campaigns work much better than the rest: the answer gold should find.
            let influence = if k % 7 == 3 {
                0.45
            } else if k % 5 == 1 {
                0.2
            } else {
                0.04
            };
            Campaign {
                id: format!("CMP-{:03}", k + 1),
                name: format!(
                    "{} {} {}",
                    rng.pick(&["Spring", "Summer", "Autumn", "Winter"]),
                    FEATURES[feature],
                    rng.pick(&["Launch", "Webinar", "Nurture", "Roadshow", "Deep Dive"])
                ),
                channel: CHANNELS[k % CHANNELS.len()],
                feature,
                start: 10 + (k as i64) * 17,
                influence,
            }
        })
        .collect()
}

fn epoch() -> NaiveDate {
    NaiveDate::from_ymd_opt(2024, 1, 1).expect("date")
}

fn day(d: i64) -> NaiveDate {
    epoch() + Duration::days(d)
}

fn quarter_of(d: i64) -> u32 {
    let date = day(d);
    (date.year() as u32 - 2024) * 4 + (date.month0() / 3)
}

fn quarter_label(q: u32) -> String {
    format!("{}q{}", 2024 + q / 4, q % 4 + 1)
}

fn at(d: i64, secs: u64) -> NaiveDateTime {
    day(d).and_hms_opt(0, 0, 0).expect("time") + Duration::seconds(secs as i64)
}

/// A date as one of the CRM's three formats.
fn crm_date(rng: &mut Rng, d: NaiveDate) -> String {
    match rng.below(10) {
        0..=5 => d.format("%Y-%m-%d").to_string(),
        6..=8 => d.format("%m/%d/%Y").to_string(),
        _ => d.format("%Y%m%d").to_string(),
    }
}

/// An e-mail address as someone typed it: random case, sometimes padded.
fn typed_email(rng: &mut Rng, email: &str) -> String {
    let mut s: String = match rng.below(4) {
        0 => email.to_string(),
        1 => email.to_ascii_uppercase(),
        _ => {
            let mut up = true;
            email
                .chars()
                .map(|c| {
                    let out = if up { c.to_ascii_uppercase() } else { c };
                    up = matches!(c, '.' | '@');
                    out
                })
                .collect()
        }
    };
    if rng.chance(0.2) {
        s = format!(" {s}");
    }
    if rng.chance(0.2) {
        s.push(' ');
    }
    s
}

/// A ten-digit phone number in one of several formats.
fn typed_phone(rng: &mut Rng, digits: &str) -> String {
    let (a, b, c) = (&digits[0..3], &digits[3..6], &digits[6..10]);
    match rng.below(4) {
        0 => format!("({a}) {b}-{c}"),
        1 => format!("{a}.{b}.{c}"),
        2 => format!("+1 {a} {b} {c}"),
        _ => digits.to_string(),
    }
}

fn csv_field(s: &str, sep: char) -> String {
    if s.contains(sep) || s.contains('"') || s.contains('\n') {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The four exports, one file per quarter each.
#[derive(Clone, Copy)]
enum Export {
    Accounts,
    Opportunities,
    Engagement,
    Tickets,
}

impl Export {
    const ALL: [Export; 4] = [
        Export::Accounts,
        Export::Opportunities,
        Export::Engagement,
        Export::Tickets,
    ];
    fn path(self, q: u32) -> String {
        let l = quarter_label(q);
        match self {
            Export::Accounts => format!("crm/accounts_{l}.csv"),
            Export::Opportunities => format!("crm/opportunities_{l}.csv"),
            Export::Engagement => format!("marketing/engagement_{l}.json"),
            Export::Tickets => format!("support/tickets_{l}.csv"),
        }
    }
    fn header(self) -> Option<&'static str> {
        match self {
            Export::Accounts => Some(
                "account_id,company,segment,region,contact_name,contact_email,phone,created_date,last_modified",
            ),
            Export::Opportunities => Some(
                "opportunity_id,account_id,product,type,stage,amount,created_date,close_date,last_modified",
            ),
            Export::Engagement => None,
            Export::Tickets => Some("ticket;requester;opened;closed;priority;category;csat"),
        }
    }
}

/// Open writers for the files of the quarters asked for that do not exist yet.
struct Sinks {
    files: BTreeMap<(usize, u32), BufWriter<File>>,
    quarters: u32,
    rows: u64,
    written: Vec<PathBuf>,
}

impl Sinks {
    fn open(dir: &Path, quarters: u32) -> anyhow::Result<Self> {
        let mut files = BTreeMap::new();
        let mut written = Vec::new();
        for (e, export) in Export::ALL.iter().enumerate() {
            for q in 0..quarters {
                let path = dir.join(export.path(q));
                if path.exists() {
                    continue;
                }
                std::fs::create_dir_all(path.parent().expect("parent"))?;
                // Written under a temporary name and renamed at the end, so a file that
                // exists is always complete.
                let tmp = path.with_extension("partial");
                let mut w = BufWriter::with_capacity(1 << 20, File::create(&tmp)?);
                if let Some(h) = export.header() {
                    writeln!(w, "{h}")?;
                }
                files.insert((e, q), w);
                written.push(path);
            }
        }
        Ok(Sinks {
            files,
            quarters,
            rows: 0,
            written,
        })
    }

    /// Writes a line to an export's file for quarter `q` (later quarters are not exported).
    fn line(&mut self, export: Export, q: u32, line: &str) -> anyhow::Result<bool> {
        if q >= self.quarters {
            return Ok(false);
        }
        self.rows += 1;
        if let Some(w) = self.files.get_mut(&(export as usize, q)) {
            w.write_all(line.as_bytes())?;
            w.write_all(b"\n")?;
        }
        Ok(true)
    }

    fn finish(self) -> anyhow::Result<(usize, u64)> {
        for (_, w) in self.files {
            let f = w.into_inner().map_err(|e| e.into_error())?;
            f.sync_all()?;
        }
        for path in &self.written {
            std::fs::rename(path.with_extension("partial"), path)?;
        }
        Ok((self.written.len(), self.rows))
    }
}

/// The quarter a record dated `d` is exported in: usually its own, sometimes the next.
fn export_quarter(rng: &mut Rng, d: i64) -> u32 {
    quarter_of(d) + u32::from(rng.chance(0.02))
}

/// Writes the raw files under `dir` (`crm/`, `marketing/`, `support/`) and returns the truth.
pub fn generate(dir: &Path, spec: &Spec) -> anyhow::Result<Truth> {
    anyhow::ensure!(
        spec.scale > 0.0 && spec.scale.is_finite(),
        "--scale must be a positive number"
    );
    anyhow::ensure!(
        (1..=QUARTERS).contains(&spec.quarters),
        "--quarters must be between 1 and {QUARTERS}"
    );
    let accounts = ((ACCOUNTS_PER_SCALE * spec.scale).round() as u64).max(20);
    let campaigns = campaigns(spec.seed);
    let mut out = Sinks::open(dir, spec.quarters)?;
    let mut truth = Truth::default();
    let mut line = String::with_capacity(256);
    let mut opp_seq = 0u64;
    let mut ticket_seq = 0u64;
    for i in 0..accounts {
        let mut rng = Rng::new(spec.seed.wrapping_mul(31).wrapping_add(i));
        let id = format!("ACC-{:06}", i + 1);
        let created = rng.below(600) as i64;
        let segment = match rng.below(100) {
            0..=54 => 0,
            55..=84 => 1,
            _ => 2,
        };
        let region = *rng.pick(REGIONS);
        let company = format!("{} {} {}", rng.pick(ADJ), rng.pick(NOUN), rng.pick(SUFFIX));
        let (first, last) = (*rng.pick(FIRST), *rng.pick(LAST));
        let domain: String = company
            .split(' ')
            .take(2)
            .collect::<String>()
            .to_ascii_lowercase();
        let email = format!("{first}.{last}@{domain}{}.com", i + 1);
        let phone = format!("{}555{:04}", 201 + (i / 10_000) % 798, i % 10_000);
        // Whether any row of this account is exported: only then can other systems'
        // records resolve to it.
        let mut exported = false;

        // CRM account rows: created, then re-exported after changes (duplicates by id).
        let mut versions = vec![created];
        let mut t = created;
        while rng.chance(0.25) {
            t += 30 + rng.below(200) as i64;
            if t < DAYS {
                versions.push(t);
            }
        }
        for (v, &d) in versions.iter().enumerate() {
            let q = export_quarter(&mut rng, d);
            let name = format!("{} {}", capitalise(first), capitalise(last));
            let seg = if v > 0 && rng.chance(0.1) {
                SEGMENTS[(segment + 1) % 3]
            } else {
                SEGMENTS[segment]
            };
            let shown_id = if rng.chance(0.05) {
                format!(" {}", id.to_ascii_lowercase())
            } else {
                id.clone()
            };
            let last_modified = at(d, rng.below(86_400)).format("%Y-%m-%dT%H:%M:%SZ");
            let typed = typed_email(&mut rng, &email);
            let tphone = typed_phone(&mut rng, &phone);
            let cdate = crm_date(&mut rng, day(created));
            line.clear();
            write!(
                line,
                "{shown_id},{},{seg},{region},{name},{},{},{cdate},{last_modified}",
                csv_field(&company, ','),
                csv_field(&typed, ','),
                csv_field(&tphone, ','),
            )
            .expect("writing to a String");
            exported |= out.line(Export::Accounts, q, &line)?;
            // An exact duplicate row now and then, and a row that lost its id.
            if rng.chance(0.01) {
                out.line(Export::Accounts, q, &line)?;
            }
            if rng.chance(0.003) && out.line(Export::Accounts, q, &line[shown_id.len()..])? {
                truth.broken_records += 1;
            }
        }

        truth.accounts += u64::from(exported);

        // Support tickets: each account has its own rate; frequent requesters are less happy.
        let rate = *rng.pick(&[0.3, 1.0, 2.0, 4.0, 8.0, 14.0]);
        let mut tickets_by_year = [0u32; 3];
        let mut d = created as f64;
        loop {
            d += -(1.0 - rng.unit()).ln() * 365.0 / rate;
            if d >= DAYS as f64 {
                break;
            }
            let opened_day = d as i64;
            ticket_seq += 1;
            let opened = at(opened_day, 8 * 3600 + rng.below(10 * 3600));
            tickets_by_year[((opened_day - created) / 365).min(2) as usize] += 1;
            let closed = (rng.chance(0.9))
                .then(|| opened + Duration::minutes(30 + rng.below(7 * 24 * 60) as i64));
            let requester = match rng.below(20) {
                0..=12 => typed_email(&mut rng, &email),
                13..=18 => typed_phone(&mut rng, &phone),
                _ => format!("someone{}@gmail.com", rng.below(1_000_000)),
            };
            let known = exported && !requester.starts_with("someone");
            let csat = if rng.chance(0.4) {
                String::new()
            } else if rng.chance(0.01) {
                "n/a".to_string()
            } else {
                let base = if rate >= 4.0 { 2.5 } else { 4.2 };
                ((base + rng.unit() * 1.6 - 0.8).round().clamp(1.0, 5.0) as u8).to_string()
            };
            let q = export_quarter(&mut rng, opened_day);
            line.clear();
            write!(
                line,
                "TCK-{:08};{};{};{};{};{};{csat}",
                ticket_seq,
                csv_field(&requester, ';'),
                opened.format("%d.%m.%Y %H:%M"),
                closed
                    .map(|c| c.format("%d.%m.%Y %H:%M").to_string())
                    .unwrap_or_default(),
                rng.pick(PRIORITIES),
                rng.pick(CATEGORIES),
            )
            .expect("writing to a String");
            if out.line(Export::Tickets, q, &line)? {
                truth.tickets += 1;
                truth.tickets_of_customers += u64::from(known);
            }
        }

        // Marketing: the contact receives campaigns running after the account exists.
        let mut ev = 0u64;
        let mut engaged: Vec<(i64, usize)> = Vec::new();
        for (k, c) in campaigns.iter().enumerate() {
            if c.start < created || !rng.chance(0.9) {
                continue;
            }
            let sent = c.start + rng.below(5) as i64;
            let mut actions = vec![("sent", sent)];
            if rng.chance(0.35) {
                let opened = sent + rng.below(5) as i64;
                actions.push(("open", opened));
                let likes = AFFINITY[segment].contains(&c.feature);
                if rng.chance(if likes { 0.55 } else { 0.08 }) {
                    let clicked = opened + rng.below(3) as i64;
                    actions.push((
                        if c.channel == "webinar" {
                            "attend"
                        } else {
                            "click"
                        },
                        clicked,
                    ));
                    engaged.push((clicked, k));
                }
            }
            for (action, d) in actions {
                if d >= DAYS {
                    continue;
                }
                ev += 1;
                let event_id = format!("{:016x}", Rng::new(spec.seed ^ (i << 20) ^ ev).next());
                let secs = rng.below(86_400);
                let q = export_quarter(&mut rng, d);
                let typed = typed_email(&mut rng, &email);
                engagement_line(&mut line, &event_id, &typed, c, action, d, secs, &mut rng);
                let first = out.line(Export::Engagement, q, &line)?;
                // Delivered twice, sometimes a quarter later (or on time while the first
                // delivery is late): the event counts once if either copy was exported.
                let again = rng.chance(0.02)
                    && out.line(Export::Engagement, export_quarter(&mut rng, d), &line)?;
                if first || again {
                    truth.engagement_events += 1;
                    truth.engagement_events_of_customers += u64::from(exported);
                }
            }
        }
        // Prospects (not in the CRM) also engage: they never resolve to a customer.
        for p in 0..3 {
            let c = rng.pick(&campaigns);
            let d = c.start + rng.below(20) as i64;
            if d >= DAYS {
                continue;
            }
            let event_id = format!("p{:015x}", Rng::new(spec.seed ^ (i << 20) ^ p).next());
            let prospect = format!("Prospect{}.{}@Gmail.com", i + 1, p);
            let secs = rng.below(86_400);
            let q = export_quarter(&mut rng, d);
            engagement_line(
                &mut line, &event_id, &prospect, c, "open", d, secs, &mut rng,
            );
            if out.line(Export::Engagement, q, &line)? {
                truth.engagement_events += 1;
            }
        }
        // And now and then a line the exporter cut short.
        if rng.chance(0.002) {
            let d = created + rng.below(100) as i64;
            if d < DAYS
                && out.line(
                    Export::Engagement,
                    quarter_of(d),
                    "{\"event_id\": \"broken\", \"email\": \"",
                )?
            {
                truth.broken_records += 1;
            }
        }

        // Opportunities: new business after engagement (how likely depends on the campaign),
        // a little at random, and a renewal before every contract anniversary.
        let mut opps: Vec<(i64, &'static str, &'static str, f64)> = Vec::new();
        for &(d, k) in &engaged {
            let c = &campaigns[k];
            if rng.chance(c.influence) {
                opps.push((
                    d + 7 + rng.below(60) as i64,
                    PRODUCT_OF_FEATURE[c.feature],
                    "New Business",
                    0.35,
                ));
            }
        }
        if rng.chance(0.5) {
            opps.push((
                created + rng.below(DAYS as u64) as i64,
                PRODUCT_OF_FEATURE[rng.below(5) as usize],
                "New Business",
                0.25,
            ));
        }
        let mut anniversary = created + 365;
        let mut year = 0;
        while anniversary - 60 < DAYS {
            let recent = tickets_by_year[year.min(2)] as f64;
            opps.push((
                anniversary - 60,
                PRODUCT_OF_FEATURE[rng.below(5) as usize],
                "Renewal",
                (0.95 - 0.06 * recent.min(9.0)).max(0.3),
            ));
            anniversary += 365;
            year += 1;
        }
        let size = [8_000.0, 40_000.0, 180_000.0][segment];
        for (d, product, kind, win) in opps {
            if d >= DAYS {
                continue;
            }
            opp_seq += 1;
            let opp_id = format!("OPP-{:08}", opp_seq);
            let amount = size * (0.4 + rng.unit() * 1.2);
            let close = d + 20 + rng.below(80) as i64;
            let won = rng.chance(win);
            let shown_account = if rng.chance(0.05) {
                format!("{} ", id.to_ascii_lowercase())
            } else {
                id.clone()
            };
            let created_s = crm_date(&mut rng, day(d));
            let amount_s = if rng.chance(0.3) {
                format!("\"${}\"", thousands(amount))
            } else {
                format!("{amount:.2}")
            };
            let mut exported = false;
            for (stage, when) in [
                ("Prospecting", d),
                (if won { "Closed Won" } else { "Closed Lost" }, close),
            ] {
                if when >= DAYS {
                    continue;
                }
                let close_s = if stage == "Prospecting" {
                    String::new()
                } else {
                    day(close).format("%Y-%m-%d").to_string()
                };
                let modified = at(when, rng.below(86_400)).format("%Y-%m-%dT%H:%M:%SZ");
                let q = export_quarter(&mut rng, when);
                line.clear();
                write!(line,
                    "{opp_id},{shown_account},{product},{kind},{stage},{amount_s},{created_s},{close_s},{modified}"
                ).expect("writing to a String");
                exported |= out.line(Export::Opportunities, q, &line)?;
            }
            truth.opportunities += u64::from(exported);
        }
    }
    let (files, rows) = out.finish()?;
    truth.files_written = files;
    truth.raw_rows = rows;
    for e in Export::ALL {
        for q in 0..spec.quarters {
            if let Ok(m) = std::fs::metadata(dir.join(e.path(q))) {
                truth.raw_bytes += m.len();
            }
        }
    }
    Ok(truth)
}

#[allow(clippy::too_many_arguments)]
fn engagement_line(
    line: &mut String,
    event_id: &str,
    email: &str,
    c: &Campaign,
    action: &str,
    d: i64,
    secs: u64,
    rng: &mut Rng,
) {
    let when = at(d, secs);
    let email = serde_json::to_string(email).expect("string");
    let name = serde_json::to_string(&c.name).expect("string");
    line.clear();
    // The 2025 export changed shape: epoch seconds instead of a timestamp string.
    let time = if when.year() >= 2025 {
        format!(
            "\"event_time\": {}, \"utm_source\": \"{}\"",
            when.and_utc().timestamp(),
            rng.pick(&["newsletter", "linkedin", "google", "partner"])
        )
    } else {
        format!("\"ts\": \"{}\"", when.format("%Y-%m-%d %H:%M:%S"))
    };
    write!(line,
        "{{\"event_id\": \"{event_id}\", \"email\": {email}, \"campaign_id\": \"{}\", \"campaign_name\": {name}, \"channel\": \"{}\", \"feature\": \"{}\", \"action\": \"{action}\", {time}}}",
        c.id, c.channel, FEATURES[c.feature]
    ).expect("writing to a String");
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

fn thousands(v: f64) -> String {
    let whole = v.trunc() as u64;
    let cents = ((v - v.trunc()) * 100.0).round() as u64 % 100;
    let digits = whole.to_string();
    let mut out = String::new();
    for (n, ch) in digits.chars().enumerate() {
        if n > 0 && (digits.len() - n).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    format!("{out}.{cents:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_data_whatever_the_quarters_written() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let spec = Spec {
            scale: 0.01,
            quarters: 8,
            seed: 7,
        };
        generate(a.path(), &spec).unwrap();
        generate(
            b.path(),
            &Spec {
                quarters: 3,
                ..spec.clone()
            },
        )
        .unwrap();
        // Writing the rest later adds files and leaves the first ones as they are.
        let first = std::fs::read(b.path().join("crm/accounts_2024q1.csv")).unwrap();
        let t = generate(b.path(), &spec).unwrap();
        assert_eq!(t.files_written, 4 * 5);
        for e in Export::ALL {
            for q in 0..8 {
                let p = e.path(q);
                assert_eq!(
                    std::fs::read(a.path().join(&p)).unwrap(),
                    std::fs::read(b.path().join(&p)).unwrap(),
                    "{p}"
                );
            }
        }
        assert_eq!(
            first,
            std::fs::read(b.path().join("crm/accounts_2024q1.csv")).unwrap()
        );
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(1234567.891), "1,234,567.89");
        assert_eq!(thousands(999.5), "999.50");
    }
}
