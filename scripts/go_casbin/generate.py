#!/usr/bin/env python3
"""Regenerates tests/go_casbin/cases.json: Go Casbin's own decisions over its
example (model, policy) pairs, the reference vigil's tests hold it to.

Needs Debian's golang-go and golang-github-casbin-casbin-dev (Go Casbin
2.60.0, with its examples/): `apt-get install golang-go
golang-github-casbin-casbin-dev`. Not run by CI: the cases file is
committed, and this script says how it was made.

Usage: scripts/go_casbin/generate.py [OUT]
"""
import itertools, json, os, random, re, shutil, subprocess, sys, tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = "/usr/share/gocode/src/github.com/casbin"
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "../../tests/go_casbin/cases.json")
REQUESTS_PER_PAIR = 200

# (model, policy, names matched with, domains matched with): the pairs Go
# Casbin's *_test.go files load, with the matching functions they register
# (vigil states them in [role_matching]); the keyGet models over the
# keyMatch policies they were written for; and one pair Go refuses.
PAIRS = [
 ("examples/basic_model.conf", "examples/basic_policy.csv", {}, {}),
 ("examples/basic_model.conf", "examples/basic_inverse_policy.csv", {}, {}),
 ("examples/basic_model_without_spaces.conf", "examples/basic_policy.csv", {}, {}),
 ("examples/basic_with_root_model.conf", "examples/basic_policy.csv", {}, {}),
 ("examples/basic_without_resources_model.conf", "examples/basic_without_resources_policy.csv", {}, {}),
 ("examples/basic_without_users_model.conf", "examples/basic_without_users_policy.csv", {}, {}),
 ("examples/comment_model.conf", "examples/basic_policy.csv", {}, {}),
 ("examples/glob_model.conf", "examples/glob_policy.csv", {}, {}),
 ("examples/ipmatch_model.conf", "examples/ipmatch_policy.csv", {}, {}),
 ("examples/keymatch2_model.conf", "examples/keymatch2_policy.csv", {}, {}),
 ("examples/keymatch_model.conf", "examples/keymatch_policy.csv", {}, {}),
 ("examples/multiple_policy_definitions_model.conf", "examples/multiple_policy_definitions_policy.csv", {}, {}),
 ("examples/priority_model.conf", "examples/priority_indeterminate_policy.csv", {}, {}),
 ("examples/priority_model.conf", "examples/priority_policy.csv", {}, {}),
 ("examples/priority_model_explicit.conf", "examples/priority_policy_explicit.csv", {}, {}),
 ("examples/priority_model_explicit_customized.conf", "examples/priority_policy_explicit_customized.csv", {}, {}),
 ("examples/rbac_model.conf", "examples/rbac_policy.csv", {}, {}),
 ("examples/rbac_model.conf", "examples/rbac_with_hierarchy_policy.csv", {}, {}),
 ("examples/rbac_model_in_multi_line.conf", "examples/rbac_policy.csv", {}, {}),
 ("examples/rbac_model_matcher_using_in_op.conf", "examples/rbac_policy.csv", {}, {}),
 ("examples/rbac_model_matcher_using_in_op_bracket.conf", "examples/rbac_policy.csv", {}, {}),
 ("examples/rbac_with_all_pattern_model.conf", "examples/rbac_with_all_pattern_policy.csv", {"g": "keyMatch2"}, {"g": "keyMatch2"}),
 ("examples/rbac_with_deny_model.conf", "examples/rbac_with_deny_policy.csv", {}, {}),
 ("examples/rbac_with_domain_pattern_model.conf", "examples/rbac_with_domain_pattern_policy.csv", {}, {"g": "keyMatch2"}),
 ("examples/rbac_with_domain_pattern_model.conf", "examples/rbac_with_domain_pattern_policy.csv", {}, {"g": "keyMatch"}),
 ("examples/rbac_with_domains_model.conf", "examples/rbac_with_domains_policy.csv", {}, {}),
 ("examples/rbac_with_domains_model.conf", "examples/rbac_with_domains_policy2.csv", {}, {}),
 ("examples/rbac_with_domains_model.conf", "examples/rbac_with_hierarchy_with_domains_policy.csv", {}, {}),
 ("examples/rbac_with_multiple_policy_model.conf", "examples/rbac_with_multiple_policy_policy.csv", {}, {}),
 ("examples/rbac_with_not_deny_model.conf", "examples/rbac_with_deny_policy.csv", {}, {}),
 ("examples/rbac_with_pattern_model.conf", "examples/rbac_with_pattern_policy.csv", {"g": "keyMatch2", "g2": "keyMatch2"}, {}),
 ("examples/rbac_with_resource_roles_model.conf", "examples/rbac_with_resource_roles_policy.csv", {}, {}),
 ("examples/subject_priority_model.conf", "examples/subject_priority_policy.csv", {}, {}),
 ("examples/subject_priority_model_with_domain.conf", "examples/subject_priority_policy_with_domain.csv", {}, {}),
 # keyGet/keyGet2 examples ship without a policy.
 ("examples/keyget_model.conf", "examples/keymatch_policy.csv", {}, {}),
 ("examples/keyget2_model.conf", "examples/keymatch2_policy.csv", {}, {}),
 # Not in Go's tests: a policy with domains under a model without them,
 # which Go refuses to load.
 ("examples/rbac_model.conf", "examples/rbac_with_domains_policy.csv", {}, {}),
]


def build_oracle(work):
    """Go Casbin 2.60 from Debian's source package, built offline."""
    dep = os.path.join(work, "dep")
    shutil.copytree(os.path.join(SOURCE, "casbin"), os.path.join(dep, "casbin"))
    shutil.copytree("/usr/share/gocode/src/github.com/Knetic/govaluate", os.path.join(dep, "govaluate"))
    open(os.path.join(dep, "casbin/go.mod"), "w").write(
        "module github.com/casbin/casbin/v2\n\nrequire github.com/Knetic/govaluate "
        "v3.0.1-0.20171022003610-9aa49832a739+incompatible\n\ngo 1.13\n")
    for stale in ["casbin/go.sum"]:
        if os.path.exists(os.path.join(dep, stale)):
            os.remove(os.path.join(dep, stale))
    if not os.path.exists(os.path.join(dep, "govaluate/go.mod")):
        open(os.path.join(dep, "govaluate/go.mod"), "w").write("module github.com/Knetic/govaluate\ngo 1.13\n")
    shutil.copy(os.path.join(HERE, "oracle.go"), os.path.join(work, "main.go"))
    open(os.path.join(work, "go.mod"), "w").write(
        "module oracle\n\ngo 1.19\n\nrequire github.com/casbin/casbin/v2 v2.60.0\n"
        "require github.com/Knetic/govaluate v3.0.1-0.20171022003610-9aa49832a739+incompatible\n\n"
        "replace github.com/casbin/casbin/v2 => ./dep/casbin\n"
        "replace github.com/Knetic/govaluate => ./dep/govaluate\n")
    env = dict(os.environ, GOPROXY="off", GOFLAGS="-mod=mod", GOPATH=os.path.join(work, "gopath"),
               GOCACHE=os.path.join(work, "gocache"))
    subprocess.run(["go", "build", "-o", "oracle", "."], cwd=work, env=env, check=True)
    return os.path.join(work, "oracle")

def section(text, name):
    out, cur = {}, None
    for line in text.splitlines():
        line = re.split(r"\s[#;]", line)[0].strip()
        if line.startswith("[") and line.endswith("]"):
            cur = line[1:-1]; continue
        if cur == name and "=" in line:
            k, v = line.split("=", 1); out[k.strip()] = v.strip()
    return out

def rows(text):
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            yield [c.strip() for c in line.split(",")]

def requests(model, policy, seed):
    """Requests from the values the policy names at each token (and role
    names, and concrete instances of its patterns), plus a few strangers:
    every combination when they are few, a seeded sample otherwise."""
    rdef, pdef = section(model, "request_definition"), section(model, "policy_definition")
    tokens = [t.strip() for t in rdef.get("r", "").split(",")]
    by_name, every = {}, set()
    for row in rows(policy):
        kind, values = row[0], row[1:]
        every.update(values)
        names = [t.strip() for t in pdef[kind].split(",")] if kind in pdef else []
        for name, value in zip(names, values):
            by_name.setdefault(name, set()).add(value)
        if kind.startswith("g"):
            by_name.setdefault("sub", set()).update(values[:2])
            by_name.setdefault("obj", set()).update(values[:2])
            if len(values) > 2:
                by_name.setdefault("dom", set()).update(values[2:3])
    strangers = ["192.168.2.123", "10.0.0.5", "nobody", "/data/x/1", "data1", "read", "write", "domain1", "/foo/bar"]
    rnd = random.Random(seed)
    choices = []
    for token in tokens:
        values = set(by_name.get(token, set()))
        values |= set(rnd.sample(sorted(every), min(3, len(every)))) | set(rnd.sample(strangers, 3))
        for value in list(values):
            if "*" in value: values.add(value.replace("*", "x/y"))
            if ":" in value and "/" in value: values.add(re.sub(r":\w+", "7", value))
            if "{" in value: values.add(re.sub(r"\{\w+\}", "7", value))
        choices.append(sorted(values - {""}))
    total = 1
    for values in choices:
        total *= len(values)
    if total <= REQUESTS_PER_PAIR:
        return tokens, [list(r) for r in itertools.product(*choices)]
    return tokens, [[rnd.choice(values) for values in choices] for _ in range(REQUESTS_PER_PAIR)]

def main():
    version = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "golang-github-casbin-casbin-dev"],
                             capture_output=True, text=True, check=True).stdout
    work = tempfile.mkdtemp()
    try:
        oracle = build_oracle(work)
        examples = os.path.join(work, "dep/casbin")
        jobs, pairs = [], []
        for seed, (model_path, policy_path, names, domains) in enumerate(PAIRS):
            model = open(os.path.join(examples, model_path)).read()
            policy = open(os.path.join(examples, policy_path)).read()
            tokens, reqs = requests(model, policy, seed)
            jobs.append({"model": os.path.join(examples, model_path), "policy": os.path.join(examples, policy_path),
                         "requests": reqs, "names": names, "domains": domains})
            pairs.append({"source": f"{model_path} + {policy_path}", "model": model, "policy": policy,
                          "names": names, "domains": domains, "tokens": tokens, "requests": reqs})
        answers = subprocess.run([oracle], input="".join(json.dumps(j) + "\n" for j in jobs),
                                 capture_output=True, text=True, check=True).stdout.splitlines()
        kept = []
        for pair, answer in zip(pairs, map(json.loads, answers)):
            if answer.get("error"):
                # vigil must refuse it too.
                kept.append({"source": pair["source"], "model": pair["model"], "policy": pair["policy"],
                             "names": {}, "domains": {}, "refused": answer["error"]})
                continue
            # t: allowed, f: denied, e: Go's evaluation failed (an ipMatch
            # of a value that is no address), which must not allow either.
            pair["go"] = "".join("e" if d.startswith("error") else d[0] for d in answer["decisions"])
            kept.append(pair)
        with open(OUT, "w") as out:
            json.dump({"generator": "scripts/go_casbin/generate.py",
                       "reference": f"Go Casbin {version} (Debian golang-github-casbin-casbin-dev), examples/",
                       "pairs": kept}, out, indent=0)
            out.write("\n")
        print(f"{sum(len(p.get('go', '')) for p in kept)} decisions over {len(kept)} pairs -> {OUT}")
    finally:
        shutil.rmtree(work)

main()
