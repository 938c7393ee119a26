//! OpenMetrics text (what `prometheus-client` writes) to the Prometheus text format
//! 0.0.4 that `/metrics` announces in its content type.
//!
//! The two differ where a Prometheus text parser (and `promtool check metrics`)
//! notices: an OpenMetrics counter family `x` has samples `x_total`, while the text
//! format names the family `x_total` itself, so its HELP and TYPE must say
//! `x_total` or the samples read as an undocumented untyped metric. `# EOF` and
//! `# UNIT` lines are OpenMetrics only.

use std::collections::HashSet;

/// Rewrites an OpenMetrics exposition as Prometheus text format 0.0.4.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let counters: HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len() + 16 * counters.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let descriptor = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
        match descriptor {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                out.push_str(prefix);
                out.push_str(name);
                if counters.contains(name) && !name.ends_with("_total") {
                    out.push_str("_total");
                }
                let tail = if prefix == "# TYPE " && tail == "unknown" {
                    "untyped"
                } else {
                    tail
                };
                if !tail.is_empty() {
                    out.push(' ');
                    out.push_str(tail);
                }
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_openmetrics_counters_then_their_help_and_type_name_the_total_samples() {
        let om = "# HELP rmds_published Messages accepted.\n# TYPE rmds_published counter\n\
                  rmds_published_total 3\n# HELP rmds_up Up.\n# TYPE rmds_up gauge\nrmds_up 1\n\
                  # HELP rmds_t Time.\n# TYPE rmds_t histogram\n# UNIT rmds_t seconds\n\
                  rmds_t_sum 0.5\nrmds_t_count 1\nrmds_t_bucket{le=\"+Inf\"} 1\n# EOF\n";
        let text = to_prometheus_text(om);
        assert_eq!(
            text,
            "# HELP rmds_published_total Messages accepted.\n# TYPE rmds_published_total counter\n\
             rmds_published_total 3\n# HELP rmds_up Up.\n# TYPE rmds_up gauge\nrmds_up 1\n\
             # HELP rmds_t Time.\n# TYPE rmds_t histogram\n\
             rmds_t_sum 0.5\nrmds_t_count 1\nrmds_t_bucket{le=\"+Inf\"} 1\n"
        );
    }

    #[test]
    fn given_a_counter_sample_whose_name_mentions_another_family_then_only_descriptors_change() {
        let om = "# HELP a Counter a.\n# TYPE a counter\na_total{x=\"a counter\"} 1\n# EOF\n";
        assert_eq!(
            to_prometheus_text(om),
            "# HELP a_total Counter a.\n# TYPE a_total counter\na_total{x=\"a counter\"} 1\n"
        );
    }
}
