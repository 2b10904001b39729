//! Reading a service's `/metrics` page (Prometheus text format) in tests and load runs.
//!
//! Only what the services print is understood: `# HELP` / `# TYPE` comments, and sample
//! lines `name{label="value",...} number` without timestamps. Label values are compared as
//! they appear in the text (the services' label values need no escaping).

/// One sample line: metric name, labels in the order written, value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The series name as written (counters include `_total`).
    pub name: String,
    /// `(label, value)` pairs.
    pub labels: Vec<(String, String)>,
    /// The sample value.
    pub value: f64,
}

/// A parsed metrics page.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    samples: Vec<Sample>,
}

impl Metrics {
    /// Parses the text of a `/metrics` answer; lines that are not samples are skipped.
    pub fn parse(text: &str) -> Self {
        let samples = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(parse_sample)
            .collect();
        Self { samples }
    }

    /// Every sample, in page order.
    pub fn samples(&self) -> &[Sample] {
        &self.samples
    }

    /// The value of the series `name` whose labels are exactly `labels` (in any order);
    /// `&[]` asks for the series without labels.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .iter()
            .find(|s| {
                s.name == name
                    && s.labels.len() == labels.len()
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.iter().any(|(sk, sv)| sk == k && sv == v))
            })
            .map(|s| s.value)
    }

    /// The sum over every series of `name`, whatever its labels (0 when there is none).
    pub fn sum(&self, name: &str) -> f64 {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .map(|s| s.value)
            .sum()
    }
}

fn parse_sample(line: &str) -> Option<Sample> {
    let line = line.trim();
    let (series, value) = line.rsplit_once(' ')?;
    let value = value.parse().ok()?;
    let (name, labels) = match series.split_once('{') {
        Some((name, rest)) => (name, parse_labels(rest.strip_suffix('}')?)?),
        None => (series, Vec::new()),
    };
    if name.is_empty() || name.contains(' ') {
        return None;
    }
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

fn parse_labels(text: &str) -> Option<Vec<(String, String)>> {
    let mut labels = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"")?;
        let (value, after) = after.split_once('"')?;
        labels.push((key.trim().to_owned(), value.to_owned()));
        rest = after.trim_start_matches(',');
    }
    Some(labels)
}

/// GETs `url` (a `/metrics` page) and parses it.
///
/// # Errors
/// When the request fails or the status is not 200.
pub async fn scrape(url: &str) -> Result<Metrics, String> {
    match crate::try_http_get(url).await? {
        (200, body) => Ok(Metrics::parse(&body)),
        (status, body) => Err(format!("GET {url}: status {status}: {body}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = "\
# HELP ingest_readings_accepted Readings counted.
# TYPE ingest_readings_accepted counter
ingest_readings_accepted_total 3
ingest_readings_rejected_total{reason=\"late\"} 2
ingest_readings_rejected_total{reason=\"too_many_keys\"} 990000
ingest_keys 10000
gateway_frame_delay_seconds_bucket{le=\"0.005\",kind=\"update\"} 7
ingest_readings_accepted_total_extra 99
";

    #[test]
    fn series_are_found_by_name_and_exact_labels() {
        let m = Metrics::parse(PAGE);
        assert_eq!(m.get("ingest_readings_accepted_total", &[]), Some(3.0));
        assert_eq!(m.get("ingest_keys", &[]), Some(10_000.0));
        assert_eq!(
            m.get(
                "ingest_readings_rejected_total",
                &[("reason", "too_many_keys")]
            ),
            Some(990_000.0)
        );
        assert_eq!(
            m.get(
                "gateway_frame_delay_seconds_bucket",
                &[("kind", "update"), ("le", "0.005")]
            ),
            Some(7.0)
        );
        // A prefix of another name, or labels that are a subset, do not match.
        assert_eq!(m.get("ingest_readings_accepted", &[]), None);
        assert_eq!(m.get("ingest_readings_rejected_total", &[]), None);
        assert_eq!(
            m.get("gateway_frame_delay_seconds_bucket", &[("le", "0.005")]),
            None
        );
    }

    #[test]
    fn sum_adds_every_labelled_series_of_one_name() {
        let m = Metrics::parse(PAGE);
        assert_eq!(m.sum("ingest_readings_rejected_total"), 990_002.0);
        assert_eq!(m.sum("ingest_readings_accepted_total"), 3.0);
        assert_eq!(m.sum("missing"), 0.0);
    }

    #[test]
    fn comments_and_junk_are_not_samples() {
        let m = Metrics::parse("# TYPE x counter\n\nnot a sample\nx_total 1\ny{broken 2\n");
        assert_eq!(m.samples().len(), 1);
        assert_eq!(m.get("x_total", &[]), Some(1.0));
    }
}
