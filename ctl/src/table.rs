//! Plain aligned tables for humans (`--json` prints the agent's JSON instead).

use serde_json::Value;

/// A cell as text: strings bare, `null` as `-`, arrays joined by commas, objects as
/// `k=v` pairs, everything else as JSON.
pub fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) => {
            if a.is_empty() {
                "-".into()
            } else {
                a.iter().map(cell).collect::<Vec<_>>().join(",")
            }
        }
        Value::Object(o) => {
            if o.is_empty() {
                "-".into()
            } else {
                o.iter()
                    .map(|(k, v)| format!("{k}={}", cell(v)))
                    .collect::<Vec<_>>()
                    .join(",")
            }
        }
        other => other.to_string(),
    }
}

/// Renders `rows` (objects) under `columns` (header, key) with aligned columns.
pub fn render(columns: &[(&str, &str)], rows: &[Value]) -> String {
    let mut grid: Vec<Vec<String>> = vec![columns.iter().map(|c| c.0.to_uppercase()).collect()];
    for r in rows {
        grid.push(columns.iter().map(|c| cell(&r[c.1])).collect());
    }
    let widths: Vec<usize> = (0..columns.len())
        .map(|i| {
            grid.iter()
                .map(|row| row[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in grid {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn given_rows_when_rendered_then_columns_align_and_values_are_readable() {
        let rows = vec![
            json!({"node": "alice", "online": true, "m": {"chat": "writer"}}),
            json!({"node": "bo", "online": false, "m": {}, "x": null}),
        ];
        let t = render(
            &[("node", "node"), ("online", "online"), ("channels", "m")],
            &rows,
        );
        assert_eq!(
            t,
            "NODE   ONLINE  CHANNELS\nalice  true    chat=writer\nbo     false   -\n"
        );
        assert_eq!(cell(&json!(["a", "b"])), "a,b");
        assert_eq!(cell(&json!(null)), "-");
    }
}
