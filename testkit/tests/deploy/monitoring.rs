//! `deploy/prometheus` (promtool config, rules and rule tests) and
//! `deploy/grafana` (the dashboard uses only exported metrics).

use crate::*;

#[test]
fn prometheus_config_and_alerts_pass_promtool() {
    let promtool = promtool();
    let hint = "Debian package prometheus";
    for args in [
        &["check", "config", "deploy/prometheus/prometheus.yml"][..],
        &["check", "rules", "deploy/prometheus/alerts.yml"][..],
        &["test", "rules", "deploy/prometheus/alerts_test.yml"][..],
    ] {
        let output = run(&promtool, args, hint);
        println!("promtool {}: {}", args.join(" "), text(&output).trim());
        assert!(
            output.status.success(),
            "promtool {}: {}",
            args.join(" "),
            text(&output)
        );
    }

    // Each alert: a `for`, a severity, a summary and a description; the ones
    // the runbooks expect exist; only exported metrics.
    let rules = yaml("deploy/prometheus/alerts.yml");
    let mut alerts = BTreeSet::new();
    let mut used = BTreeSet::new();
    for rule in items(&rules, "/groups")
        .iter()
        .flat_map(|g| items(g, "/rules"))
    {
        let name = str_at(rule, "/alert");
        assert!(!name.is_empty(), "a rule that is not an alert: {rule}");
        assert!(rule.get("for").is_some(), "{name}: no `for`");
        assert!(
            ["critical", "warning"].contains(&str_at(rule, "/labels/severity")),
            "{name}: severity"
        );
        for annotation in ["summary", "description"] {
            assert!(
                !str_at(rule, &format!("/annotations/{annotation}")).is_empty(),
                "{name}: no {annotation}"
            );
        }
        used.extend(metric_names(str_at(rule, "/expr")));
        alerts.insert(name.to_owned());
    }
    for expected in [
        "TallyConsumerLagGrowing",
        "TallyGateway5xxRate",
        "TallyBrokerUnavailable",
        "TallyRefresherLagging",
        "TallyClickHouseInsertFailures",
    ] {
        assert!(alerts.contains(expected), "alerts.yml has no {expected}");
    }
    let unknown = unknown_metrics(&used, &metrics_exported());
    assert!(
        unknown.is_empty(),
        "alerts.yml uses metrics no service exports: {unknown:?}"
    );

    // The unit tests cover at least the lag and 5xx alerts.
    let tests = std::fs::read_to_string(repo().join("deploy/prometheus/alerts_test.yml")).unwrap();
    for alert in ["TallyConsumerLagGrowing", "TallyGateway5xxRate"] {
        assert!(
            tests.contains(&format!("alertname: {alert}")),
            "alerts_test.yml does not test {alert}"
        );
    }
}

#[test]
fn grafana_dashboard_uses_only_exported_metrics() {
    let path = repo().join("deploy/grafana/dashboards/tally.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    let datasource = yaml("deploy/grafana/provisioning/datasources/prometheus.yml");
    let uid = str_at(&datasource, "/datasources/0/uid");
    assert!(!uid.is_empty(), "the provisioned data source has no uid");
    let provider = yaml("deploy/grafana/provisioning/dashboards/tally.yml");
    assert_eq!(
        str_at(&provider, "/providers/0/options/path"),
        "/var/lib/grafana/dashboards",
        "dashboard provider path (docker-compose.yml mounts the dashboards there)"
    );

    let mut used = BTreeSet::new();
    let mut queries = 0;
    for panel in items(&dashboard, "/panels") {
        if panel["type"] == "row" {
            continue;
        }
        let title = str_at(panel, "/title");
        assert_eq!(
            str_at(panel, "/datasource/uid"),
            uid,
            "panel {title}: data source"
        );
        let targets = items(panel, "/targets");
        assert!(!targets.is_empty(), "panel {title} has no query");
        for target in targets {
            let expr = str_at(target, "/expr");
            assert!(!expr.is_empty(), "panel {title}: empty query");
            used.extend(metric_names(expr));
            queries += 1;
        }
    }
    let unknown = unknown_metrics(&used, &metrics_exported());
    assert!(
        unknown.is_empty(),
        "the dashboard uses metrics no service exports: {unknown:?}"
    );
    for needed in [
        "tally_gateway_events_total",
        "tally_gateway_requests_total",
        "tally_aggregator_consumer_lag",
        "tally_aggregator_flush_errors_total",
        "tally_query_seconds_bucket",
        "tally_refresher_last_success_seconds",
        "tally_storage_bytes_on_disk",
    ] {
        assert!(
            used.contains(needed),
            "the dashboard does not show {needed}"
        );
    }
    println!(
        "dashboard: {queries} queries over {} metrics, all exported",
        used.len()
    );
}
