//! Which exposition format a scraper gets, chosen from its `Accept` header as
//! client_golang's `promhttp` chooses (`expfmt.NegotiateIncludingOpenMetrics`):
//! OpenMetrics when asked for, else the Prometheus text format 0.0.4, which is also
//! what a scraper that sends no `Accept` (or only `*/*`, or protobuf first) gets.
//! We cannot write protobuf, so a protobuf entry is passed over, not honoured.
//!
//! prometheus-client writes OpenMetrics only. For what we export (counters, gauges and
//! histograms, no units, no `_created`, no exemplars) the text format 0.0.4 differs in
//! three places, which [`to_text`] rewrites: a counter's `# HELP` and `# TYPE` name
//! the `_total` series (OpenMetrics names the family without it), there is no
//! `# UNIT`, and no `# EOF`. Samples, label escaping and numbers are the same in both.

/// An exposition format we can write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// The Prometheus text format, version 0.0.4.
    Text,
    /// OpenMetrics 1.0.0 (also sent to a scraper asking for 0.0.1: same body).
    OpenMetrics { version: OpenMetricsVersion },
}

/// The OpenMetrics version named in the response's `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpenMetricsVersion {
    V1_0_0,
    V0_0_1,
}

impl Format {
    /// OpenMetrics 1.0.0.
    pub(crate) const OPEN_METRICS: Self = Self::OpenMetrics {
        version: OpenMetricsVersion::V1_0_0,
    };

    /// The format for a request's `Accept` header (`None`: no header, or not text).
    /// Entries are taken by `q` (highest first; equal ones in the order given), and the
    /// first one we can write wins, as in client_golang; nothing suitable → text.
    pub(crate) fn negotiate(accept: Option<&str>) -> Self {
        let Some(accept) = accept else {
            return Self::Text;
        };
        let mut ranges: Vec<MediaRange<'_>> =
            accept.split(',').filter_map(MediaRange::parse).collect();
        // Stable: equal q keep the client's order.
        ranges.sort_by(|a, b| b.q.total_cmp(&a.q));
        ranges
            .iter()
            .filter(|range| range.q > 0.0)
            .find_map(MediaRange::format)
            .unwrap_or(Self::Text)
    }

    /// The `Content-Type` of a body in this format (client_golang's spelling).
    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Self::Text => "text/plain; version=0.0.4; charset=utf-8",
            Self::OpenMetrics {
                version: OpenMetricsVersion::V1_0_0,
            } => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Self::OpenMetrics {
                version: OpenMetricsVersion::V0_0_1,
            } => "application/openmetrics-text; version=0.0.1; charset=utf-8",
        }
    }
}

/// One entry of an `Accept` header: `type/subtype; version=…; q=…`.
struct MediaRange<'a> {
    media_type: &'a str,
    version: Option<&'a str>,
    q: f64,
}

impl<'a> MediaRange<'a> {
    fn parse(entry: &'a str) -> Option<Self> {
        let mut parts = entry.split(';').map(str::trim);
        let media_type = parts.next().filter(|t| !t.is_empty())?;
        let mut range = Self {
            media_type,
            version: None,
            q: 1.0,
        };
        for param in parts {
            let Some((key, value)) = param.split_once('=') else {
                continue;
            };
            let value = value.trim().trim_matches('"');
            match key.trim() {
                "version" => range.version = Some(value),
                // An unreadable q is treated as 1, as goautoneg does not reject it either.
                "q" => range.q = value.parse().unwrap_or(1.0),
                _ => {}
            }
        }
        Some(range)
    }

    fn format(&self) -> Option<Format> {
        let media_type = self.media_type;
        if media_type.eq_ignore_ascii_case("application/openmetrics-text") {
            return match self.version {
                None | Some("1.0.0") => Some(Format::OPEN_METRICS),
                Some("0.0.1") => Some(Format::OpenMetrics {
                    version: OpenMetricsVersion::V0_0_1,
                }),
                Some(_) => None,
            };
        }
        if media_type.eq_ignore_ascii_case("text/plain") {
            return match self.version {
                None | Some("0.0.4") => Some(Format::Text),
                Some(_) => None,
            };
        }
        None
    }
}

/// The text format 0.0.4 of an OpenMetrics exposition as prometheus-client writes it
/// (see the module's doc for what changes and why nothing else has to).
pub(super) fn to_text(open_metrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = open_metrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut text = String::with_capacity(open_metrics.len() + 16 * counters.len());
    for line in open_metrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let descriptor = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|marker| Some((marker, line.strip_prefix(marker)?)));
        match descriptor {
            Some((marker, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                text.push_str(marker);
                text.push_str(name);
                if counters.contains(name) {
                    text.push_str("_total");
                }
                text.push(' ');
                text.push_str(tail);
            }
            None => text.push_str(line),
        }
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const OM_1: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    const OM_0: &str = "application/openmetrics-text; version=0.0.1; charset=utf-8";
    const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

    #[test]
    fn negotiation_follows_client_golang() {
        for (accept, want) in [
            (None, TEXT),
            (Some(""), TEXT),
            (Some("*/*"), TEXT),
            (Some("text/plain"), TEXT),
            (Some("text/plain;version=0.0.4"), TEXT),
            (Some("text/plain;version=0.0.5"), TEXT),
            (Some("application/json"), TEXT),
            (Some("application/openmetrics-text"), OM_1),
            (Some("application/openmetrics-text; version=0.0.1"), OM_0),
            (Some("application/openmetrics-text;version=2.0.0"), TEXT),
            // Prometheus 2.42's default scrape.
            (
                Some(
                    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
                     version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
                ),
                OM_1,
            ),
            // With native histograms: protobuf first, which we pass over.
            (
                Some(
                    "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;\
                     encoding=delimited,application/openmetrics-text;version=1.0.0;q=0.8,\
                     application/openmetrics-text;version=0.0.1;q=0.75,\
                     text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
                ),
                OM_1,
            ),
            // q decides, not the order.
            (
                Some("text/plain;version=0.0.4;q=0.5,application/openmetrics-text;q=0.9"),
                OM_1,
            ),
            (
                Some("application/openmetrics-text;q=0.2, text/plain;q=0.3"),
                TEXT,
            ),
            // q=0 means "not this".
            (Some("application/openmetrics-text;q=0"), TEXT),
        ] {
            assert_eq!(
                Format::negotiate(accept).content_type(),
                want,
                "Accept: {accept:?}"
            );
        }
    }

    #[test]
    fn text_names_counters_by_their_total_series_and_ends_without_eof() {
        let open_metrics = "# HELP a_requests Requests.\n# TYPE a_requests counter\n\
                            a_requests_total{code=\"200\"} 1\n\
                            # HELP a_up Up.\n# TYPE a_up gauge\na_up 1\n\
                            # HELP a_size Size.\n# TYPE a_size gauge\n# UNIT a_size bytes\na_size 2\n\
                            # EOF\n";
        assert_eq!(
            to_text(open_metrics),
            "# HELP a_requests_total Requests.\n# TYPE a_requests_total counter\n\
             a_requests_total{code=\"200\"} 1\n\
             # HELP a_up Up.\n# TYPE a_up gauge\na_up 1\n\
             # HELP a_size Size.\n# TYPE a_size gauge\na_size 2\n"
        );
    }
}
