//! Role cycles, refused at load as Go Casbin's default role manager
//! refuses them (`cycle detected: alice -> data2_admin -> super_admin ->
//! alice`): in a cycle every name holds every role of it, which no one
//! writing the grants meant.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::{authz::RuleLine, diagnostics::Problem};

use super::files::POLICY_FILE;

/// One grouping type's grants in one domain: member → (role, line), in
/// file order.
type Grants<'a> = HashMap<&'a str, Vec<(&'a str, usize)>>;

/// Every cycle among the role grants, per grouping type and domain, each
/// once, at the line of its first grant and naming every line in it.
pub fn cycles(rules: &[RuleLine]) -> Vec<Problem> {
    let mut graphs: BTreeMap<(&str, &str), Grants<'_>> = BTreeMap::new();
    for rule in rules.iter().filter(|r| r.ptype.starts_with('g')) {
        let [member, role, rest @ ..] = rule.values.as_slice() else {
            continue;
        };
        let domain = rest.first().map_or("", String::as_str);
        graphs
            .entry((rule.ptype.as_str(), domain))
            .or_default()
            .entry(member.as_str())
            .or_default()
            .push((role.as_str(), rule.origin.line));
    }
    let mut problems = Vec::new();
    for ((ptype, domain), graph) in &graphs {
        let mut reported: HashSet<Vec<&str>> = HashSet::new();
        let mut starts: Vec<&str> = graph.keys().copied().collect();
        starts.sort_unstable();
        for start in starts {
            // Depth-first from `start`, looking for a way back to it.
            let mut stack: Vec<(&str, Vec<(&str, usize)>)> = vec![(start, Vec::new())];
            let mut seen: HashSet<&str> = HashSet::new();
            while let Some((name, path)) = stack.pop() {
                for &(role, line) in graph.get(name).map(Vec::as_slice).unwrap_or_default() {
                    let mut next = path.clone();
                    next.push((role, line));
                    if role == start {
                        let mut members: Vec<&str> = next.iter().map(|(r, _)| *r).collect();
                        members.sort_unstable();
                        if reported.insert(members) {
                            problems.push(problem(ptype, domain, start, &next));
                        }
                    } else if seen.insert(role) {
                        stack.push((role, next));
                    }
                }
            }
        }
    }
    problems.sort_by_key(|p| p.line);
    problems
}

fn problem(ptype: &str, domain: &str, start: &str, path: &[(&str, usize)]) -> Problem {
    let names: Vec<&str> = std::iter::once(start)
        .chain(path.iter().map(|(role, _)| *role))
        .collect();
    let lines: Vec<String> = path.iter().map(|(_, line)| line.to_string()).collect();
    let within = if domain.is_empty() {
        String::new()
    } else {
        format!(" in domain {domain}")
    };
    Problem {
        file: POLICY_FILE.to_owned(),
        line: path.iter().map(|(_, line)| *line).min().unwrap_or(0),
        message: format!(
            "cycle detected: {}{within} ({ptype} grants at lines {}); every name in a cycle would \
             hold every role in it, so it is refused, as Go Casbin refuses it",
            names.join(" -> "),
            lines.join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authz::Origin;

    fn grant(ptype: &str, values: &[&str], line: usize) -> RuleLine {
        RuleLine {
            ptype: ptype.to_owned(),
            values: values.iter().map(|v| v.to_string()).collect(),
            origin: Origin {
                file: POLICY_FILE.into(),
                line,
            },
        }
    }

    #[test]
    fn cycles_are_named_with_their_lines_once_each() {
        // Go's rbac_with_cycle_policy.csv, with a domain model beside it.
        let rules = [
            grant("p", &["alice", "data1", "read"], 1),
            grant("g", &["alice", "data2_admin"], 2),
            grant("g", &["data2_admin", "super_admin"], 3),
            grant("g", &["super_admin", "alice"], 4),
            grant("g", &["bob", "alice"], 5),
        ];
        let found = cycles(&rules);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].line, 2);
        assert!(
            found[0]
                .message
                .starts_with("cycle detected: alice -> data2_admin -> super_admin -> alice (g grants at lines 2, 3, 4)"),
            "{}",
            found[0].message
        );
        // The same names in two domains are two graphs: no cycle.
        let split = [
            grant("g", &["a", "b", "d1"], 1),
            grant("g", &["b", "a", "d2"], 2),
        ];
        assert!(cycles(&split).is_empty());
        let joined = [
            grant("g", &["a", "b", "d1"], 1),
            grant("g", &["b", "a", "d1"], 2),
        ];
        assert!(cycles(&joined)[0].message.contains("in domain d1"));
    }
}
