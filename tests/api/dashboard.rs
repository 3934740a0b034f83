//! The dashboard Terraform applies (`infra/modules/monitoring/`), rendered
//! as text: docs/OBSERVABILITY.md shows this rendering, and this test keeps it in step
//! with the dashboard's JSON.

use serde_json::Value;

/// The Cloud Monitoring dashboard's tiles drawn as boxes where the mosaic
/// places them (2 characters a column, 4 units a line), each with its title
/// and what its queries group by, then the metrics each tile reads.
fn render_dashboard(dashboard: &Value) -> String {
    let tiles = dashboard["mosaicLayout"]["tiles"]
        .as_array()
        .expect("tiles");
    let number = |tile: &Value, key: &str| tile[key].as_u64().unwrap_or(0) as usize;
    let width = 2 * tiles
        .iter()
        .map(|tile| number(tile, "xPos") + number(tile, "width"))
        .max()
        .unwrap_or(0)
        + 1;
    let height = tiles
        .iter()
        .map(|tile| (number(tile, "yPos") + number(tile, "height")) / 4)
        .max()
        .unwrap_or(0)
        + 1;
    let mut canvas = vec![vec![' '; width]; height];
    let mut legend = Vec::new();
    for (index, tile) in (1..).zip(tiles) {
        let (x0, y0) = (2 * number(tile, "xPos"), number(tile, "yPos") / 4);
        let (x1, y1) = (
            x0 + 2 * number(tile, "width"),
            y0 + number(tile, "height") / 4,
        );
        let border: Vec<char> = (x0..=x1)
            .map(|x| if x == x0 || x == x1 { '+' } else { '-' })
            .collect();
        canvas[y0][x0..=x1].copy_from_slice(&border);
        canvas[y1][x0..=x1].copy_from_slice(&border);
        for row in canvas.iter_mut().take(y1).skip(y0 + 1) {
            row[x0] = '|';
            row[x1] = '|';
        }
        let widget = &tile["widget"];
        let queries: Vec<&str> = widget["xyChart"]["dataSets"]
            .as_array()
            .expect("data sets")
            .iter()
            .map(|set| {
                set["timeSeriesQuery"]["prometheusQuery"]
                    .as_str()
                    .expect("PromQL")
            })
            .collect();
        let mut metrics: Vec<String> = Vec::new();
        for query in &queries {
            // A metric name is the identifier right before a `{` selector.
            for (at, _) in query.match_indices('{') {
                let before = &query[..at];
                let start = before
                    .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .map_or(0, |i| i + 1);
                let series = &before[start..];
                // A histogram's series, by the histogram's name.
                let metric = series
                    .strip_suffix("_bucket")
                    .or_else(|| series.strip_suffix("_count"))
                    .filter(|name| name.ends_with("_seconds"))
                    .unwrap_or(series)
                    .to_owned();
                if !metrics.contains(&metric) {
                    metrics.push(metric);
                }
            }
        }
        let grouping = queries[0]
            .split_once("by (")
            .and_then(|(_, rest)| rest.split_once(')'))
            .map(|(labels, _)| {
                let labels: Vec<&str> = labels.split(", ").filter(|label| *label != "le").collect();
                format!("by {}", labels.join(", "))
            })
            .unwrap_or_else(|| "all instances".to_owned());
        let title = widget["title"].as_str().expect("title");
        legend.push(format!("{index}. {title}: {}", metrics.join(", ")));
        let lines = [format!("{index}. {title}"), format!("   {grouping}")];
        let inner = x1 - x0 - 3;
        for (offset, line) in lines.iter().enumerate() {
            let mut text: String = line.chars().take(inner).collect();
            if line.chars().count() > inner {
                text.truncate(inner - 3);
                text.push_str("...");
            }
            for (i, c) in text.chars().enumerate() {
                canvas[y0 + 1 + offset][x0 + 2 + i] = c;
            }
        }
    }
    let mut rendered: Vec<String> = canvas
        .iter()
        .map(|row| row.iter().collect::<String>().trim_end().to_owned())
        .collect();
    rendered.push(String::new());
    rendered.extend(legend);
    rendered.join("\n")
}

#[test]
fn the_readme_shows_the_layout_of_the_dashboard_terraform_applies() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let template =
        std::fs::read_to_string(root.join("infra/modules/monitoring/dashboard.json.tftpl"))
            .unwrap();
    let dashboard: Value = serde_json::from_str(&template.replace("${job}", "tenantry")).unwrap();
    let rendered = render_dashboard(&dashboard);
    let readme = std::fs::read_to_string(root.join("docs/OBSERVABILITY.md")).unwrap();
    let shown = readme
        .split_once("<!-- dashboard-layout:begin -->\n```text\n")
        .and_then(|(_, rest)| rest.split_once("\n```\n<!-- dashboard-layout:end -->"))
        .map(|(shown, _)| shown);
    assert_eq!(
        shown,
        Some(rendered.as_str()),
        "docs/OBSERVABILITY.md's dashboard layout is stale; between the markers it should read:\n{rendered}"
    );
}
