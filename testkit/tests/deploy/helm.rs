//! `helm/tally`: strict lint, render with both values files, Kubernetes 1.30
//! schemas, and the properties a platform team relies on.

use crate::*;

/// The rendered objects of one values case, by kind and name.
struct Rendered {
    case: String,
    objects: Vec<Value>,
}

impl Rendered {
    fn of_kind(&self, kind: &str) -> Vec<&Value> {
        self.objects
            .iter()
            .filter(|o| str_at(o, "/kind") == kind)
            .collect()
    }

    fn named(&self, kind: &str, suffix: &str) -> Option<&Value> {
        self.of_kind(kind)
            .into_iter()
            .find(|o| str_at(o, "/metadata/name").ends_with(suffix))
    }

    fn get(&self, kind: &str, suffix: &str) -> &Value {
        self.named(kind, suffix)
            .unwrap_or_else(|| panic!("[{}] no {kind} named …{suffix}", self.case))
    }
}

/// Asserts the pod template of a Deployment or Job: security, resources,
/// probes (services only), a writable /tmp, env.
fn check_pod(
    case: &str,
    name: &str,
    pod: &Value,
    service_port: Option<u16>,
    vars: &BTreeSet<String>,
) {
    let at = format!("[{case}] {name}");
    let spec = &pod["spec"];
    let psc = &spec["securityContext"];
    assert_eq!(psc["runAsNonRoot"], true, "{at}: pod runAsNonRoot");
    assert!(
        psc["runAsUser"].as_u64().is_some_and(|uid| uid > 0),
        "{at}: pod runAsUser must be a fixed non-root uid: {psc}"
    );
    assert_eq!(
        str_at(psc, "/seccompProfile/type"),
        "RuntimeDefault",
        "{at}: seccompProfile"
    );
    assert_eq!(
        spec["automountServiceAccountToken"], false,
        "{at}: no API token"
    );
    let volumes = items(spec, "/volumes");
    let containers = items(spec, "/containers");
    assert!(!containers.is_empty(), "{at}: no containers");
    for container in containers {
        let at = format!("{at}/{}", str_at(container, "/name"));
        let csc = &container["securityContext"];
        assert_eq!(csc["runAsNonRoot"], true, "{at}: runAsNonRoot");
        assert_eq!(
            csc["readOnlyRootFilesystem"], true,
            "{at}: readOnlyRootFilesystem"
        );
        assert_eq!(
            csc["allowPrivilegeEscalation"], false,
            "{at}: allowPrivilegeEscalation"
        );
        assert!(
            items(csc, "/capabilities/drop").contains(&Value::from("ALL")),
            "{at}: capabilities must drop ALL: {csc}"
        );
        for path in [
            "/resources/requests/cpu",
            "/resources/requests/memory",
            "/resources/limits/memory",
        ] {
            assert!(container.pointer(path).is_some(), "{at}: no {path}");
        }
        // The read-only root needs a writable /tmp from an emptyDir.
        let tmp = items(container, "/volumeMounts")
            .iter()
            .find(|m| str_at(m, "/mountPath") == "/tmp")
            .unwrap_or_else(|| panic!("{at}: /tmp is not mounted"));
        assert!(
            volumes
                .iter()
                .any(|v| v["name"] == tmp["name"] && v.get("emptyDir").is_some()),
            "{at}: /tmp is not an emptyDir"
        );
        if let Some(port) = service_port {
            assert!(
                items(container, "/ports")
                    .iter()
                    .any(|p| p["name"] == "http" && p["containerPort"] == port),
                "{at}: no port http = {port}"
            );
            for (probe, path) in [("livenessProbe", "/livez"), ("readinessProbe", "/readyz")] {
                let get = &container[probe]["httpGet"];
                assert_eq!(str_at(get, "/path"), path, "{at}: {probe}");
                assert_eq!(get["port"], "http", "{at}: {probe} port");
            }
        }
        for env in items(container, "/env") {
            let var = str_at(env, "/name");
            assert!(
                vars.contains(var),
                "{at}: sets {var}, which no service reads"
            );
            if SECRET_VARS.contains(&var) {
                assert!(
                    env.pointer("/valueFrom/secretKeyRef").is_some() && env.get("value").is_none(),
                    "{at}: {var} must come from the Secret: {env}"
                );
            }
            // No credentials in plain values: user:password@ in a URL.
            let value = str_at(env, "/value");
            if let Some((_, rest)) = value.split_once("://") {
                let authority = rest.split('/').next().unwrap_or("");
                assert!(
                    !authority.contains('@'),
                    "{at}: {var} has credentials in a plain value"
                );
            }
        }
    }
}

/// On a ClickHouse cluster every pod that reaches ClickHouse knows the
/// cluster and every shard's replicas (the aggregator writes shards itself);
/// on one server none does.
fn check_cluster_env(r: &Rendered, cluster: bool) {
    let case = r.case.as_str();
    let mut pods = 0;
    for object in &r.objects {
        let Some(spec) = object.pointer("/spec/template/spec") else {
            continue;
        };
        for container in items(spec, "/containers") {
            let env: BTreeMap<&str, &str> = items(container, "/env")
                .iter()
                .map(|e| (str_at(e, "/name"), e["value"].as_str().unwrap_or("")))
                .collect();
            if !env.contains_key("TALLY_CLICKHOUSE_URL") {
                continue;
            }
            pods += 1;
            let at = format!("[{case}] {}", str_at(object, "/metadata/name"));
            if cluster {
                assert_eq!(env.get("TALLY_CLICKHOUSE_CLUSTER"), Some(&"tally"), "{at}");
                let shards = env.get("TALLY_CLICKHOUSE_SHARDS").copied().unwrap_or("");
                let parsed = tally_common::clickhouse::parse_shards(shards);
                assert_eq!(parsed.len(), 2, "{at}: {shards}");
                assert!(parsed.iter().all(|s| s.len() == 2), "{at}: {shards}");
            } else {
                assert!(!env.contains_key("TALLY_CLICKHOUSE_CLUSTER"), "{at}");
                assert!(!env.contains_key("TALLY_CLICKHOUSE_SHARDS"), "{at}");
            }
        }
    }
    assert!(pods >= 4, "[{case}] pods reaching ClickHouse: {pods}");
}

/// The properties of one rendered values case.
fn check_rendered(r: &Rendered, vars: &BTreeSet<String>, production: bool) {
    let case = r.case.as_str();
    // Standard labels on every object.
    for object in &r.objects {
        let labels = &object["metadata"]["labels"];
        for label in [
            "app.kubernetes.io/name",
            "app.kubernetes.io/instance",
            "app.kubernetes.io/component",
            "app.kubernetes.io/version",
            "app.kubernetes.io/managed-by",
            "helm.sh/chart",
        ] {
            assert!(
                labels.get(label).is_some(),
                "[{case}] {} {}: no label {label}",
                str_at(object, "/kind"),
                str_at(object, "/metadata/name")
            );
        }
    }

    assert_eq!(
        r.of_kind("Deployment").len(),
        COMPONENTS.len(),
        "[{case}] Deployments"
    );
    for (component, port) in COMPONENTS {
        let deployment = r.get("Deployment", &format!("-{component}"));
        let pod = &deployment["spec"]["template"];
        let selector = deployment["spec"]["selector"]["matchLabels"]
            .as_object()
            .unwrap();
        for (key, value) in selector {
            assert_eq!(
                &pod["metadata"]["labels"][key], value,
                "[{case}] {component}: selector label {key} not on the pod"
            );
        }
        assert_eq!(
            selector["app.kubernetes.io/component"], component,
            "[{case}] {component}: selector"
        );
        let annotations = &pod["metadata"]["annotations"];
        assert_eq!(
            annotations["prometheus.io/scrape"], "true",
            "[{case}] {component}: scrape annotation"
        );
        assert_eq!(
            annotations["prometheus.io/port"],
            port.to_string(),
            "[{case}] {component}: scrape port"
        );
        check_pod(case, component, pod, Some(port), vars);

        let service = r.get("Service", &format!("-{component}"));
        assert_eq!(
            &service["spec"]["selector"], &deployment["spec"]["selector"]["matchLabels"],
            "[{case}] Service {component} selects its pods"
        );
        assert!(
            items(service, "/spec/ports")
                .iter()
                .any(|p| p["port"] == port && p["targetPort"] == "http"),
            "[{case}] Service {component} port"
        );
    }

    // PDBs for gateway, query, aggregator.
    for component in ["ingest-gateway", "query-service", "stream-aggregator"] {
        let pdb = r.get("PodDisruptionBudget", &format!("-{component}"));
        assert_eq!(pdb["apiVersion"], "policy/v1", "[{case}] PDB {component}");
        assert_eq!(
            pdb["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"], component,
            "[{case}] PDB {component} selector"
        );
    }

    // HPAs: on in production (and the Deployment leaves replicas to them), off by default.
    for component in ["ingest-gateway", "query-service"] {
        let deployment = r.get("Deployment", &format!("-{component}"));
        match r.named("HorizontalPodAutoscaler", &format!("-{component}")) {
            Some(hpa) => {
                assert_eq!(
                    hpa["apiVersion"], "autoscaling/v2",
                    "[{case}] HPA {component}"
                );
                assert_eq!(
                    hpa["spec"]["scaleTargetRef"]["name"], deployment["metadata"]["name"],
                    "[{case}] HPA {component} target"
                );
                assert_eq!(
                    str_at(hpa, "/spec/metrics/0/resource/name"),
                    "cpu",
                    "[{case}] HPA {component} metric"
                );
                assert!(
                    deployment["spec"].get("replicas").is_none(),
                    "[{case}] {component}: replicas set although an HPA scales it"
                );
            }
            None => assert!(!production, "[{case}] no HPA for {component}"),
        }
    }
    assert_eq!(
        r.of_kind("HorizontalPodAutoscaler").len(),
        if production { 2 } else { 0 },
        "[{case}] HPAs"
    );

    // The refresher is a singleton (a standby is optional).
    let refresher = r.get("Deployment", "-report-refresher");
    assert_eq!(
        str_at(refresher, "/spec/strategy/type"),
        "Recreate",
        "[{case}] refresher strategy"
    );
    assert_eq!(
        refresher["spec"]["replicas"],
        if production { 2 } else { 1 },
        "[{case}] refresher replicas (1, or 2 with refresher.standby)"
    );

    // The migration Job: a hook, secured like the services.
    let job = r.get("Job", "-init");
    assert!(
        str_at(job, "/metadata/annotations/helm.sh~1hook").contains("pre-install"),
        "[{case}] the Job is not a pre-install hook"
    );
    let command = items(job, "/spec/template/spec/containers/0/command")
        .iter()
        .map(|part| part.as_str().unwrap_or(""))
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        command.contains("tally-admin topics") && command.contains("tally-admin migrate"),
        "[{case}] Job command: {command}"
    );
    check_pod(case, "Job", &job["spec"]["template"], None, vars);

    // Credentials: every secretKeyRef names the release's Secret and a key it holds.
    let refs: Vec<&Value> = r
        .objects
        .iter()
        .flat_map(|o| {
            let spec = o.pointer("/spec/template/spec");
            spec.into_iter()
                .flat_map(|s| items(s, "/containers"))
                .flat_map(|c| items(c, "/env"))
        })
        .filter_map(|env| env.pointer("/valueFrom/secretKeyRef"))
        .collect();
    assert!(!refs.is_empty(), "[{case}] no secretKeyRef");
    if production {
        assert!(
            r.of_kind("Secret").is_empty(),
            "[{case}] existingSecret is set, yet the chart renders a Secret"
        );
        for reference in &refs {
            assert_eq!(
                reference["name"], "tally-credentials",
                "[{case}] secretKeyRef"
            );
        }
    } else {
        let secret = r.get("Secret", "-credentials");
        for reference in &refs {
            assert_eq!(
                reference["name"], secret["metadata"]["name"],
                "[{case}] secretKeyRef"
            );
            let key = str_at(reference, "/key");
            assert!(
                secret["stringData"].get(key).is_some(),
                "[{case}] the Secret has no key {key}"
            );
        }
    }
}

#[test]
fn helm_chart_lints_renders_and_validates_with_both_values_files() {
    let vars = variables_read();
    let out = Scratch::new("helm");
    let out = &out.0;
    let chart = repo().join("helm/tally");
    let production = chart.join("values-production.yaml");
    let cluster = chart.join("values-cluster.yaml");
    let answer = check_py(&[
        "helm",
        chart.to_str().unwrap(),
        out.to_str().unwrap(),
        production.to_str().unwrap(),
        cluster.to_str().unwrap(),
    ]);
    let validate = PathBuf::from(answer["kubernetes_validate"].as_str().unwrap());
    let cases = items(&answer, "/cases");
    assert_eq!(cases.len(), 3, "{answer}");
    for case in cases {
        let name = str_at(case, "/name").to_owned();
        // Lint: no errors, no warnings (strict); info (e.g. "icon is recommended") is printed.
        let lint = &case["lint"];
        let problems: Vec<&Value> = items(lint, "/messages")
            .iter()
            .filter(|m| m["severity"].as_u64().unwrap_or(3) >= 2)
            .chain(items(lint, "/errors"))
            .collect();
        for message in items(lint, "/messages") {
            println!("[{name}] helm lint: {message}");
        }
        assert!(
            problems.is_empty(),
            "[{name}] helm lint --strict: {problems:?}"
        );
        if let Some(error) = case.get("error") {
            panic!("[{name}] helm template failed: {error}");
        }

        // Every manifest against the Kubernetes 1.30 schemas, unknown fields refused.
        let files: Vec<&str> = items(case, "/files")
            .iter()
            .map(|f| f.as_str().unwrap())
            .collect();
        let mut args = vec!["-k", "1.30.0", "--strict", "--quiet"];
        args.extend(&files);
        let output = run(&validate, &args, "run scripts/stack up");
        assert!(
            output.status.success(),
            "[{name}] kubernetes-validate -k 1.30.0 --strict: {}",
            text(&output)
        );

        let rendered = Rendered {
            case: name.clone(),
            objects: items(case, "/objects")
                .iter()
                .map(|o| o["object"].clone())
                .collect(),
        };
        let kinds: BTreeMap<String, usize> =
            rendered
                .objects
                .iter()
                .fold(BTreeMap::new(), |mut kinds, o| {
                    *kinds.entry(str_at(o, "/kind").to_owned()).or_default() += 1;
                    kinds
                });
        println!(
            "[{name}] lint clean, {} manifests valid for Kubernetes 1.30: {kinds:?}",
            rendered.objects.len()
        );
        check_rendered(&rendered, &vars, name != "default");
        check_cluster_env(&rendered, name == "values-cluster.yaml");
    }
}
