//! Role graphs as casbin-rs builds them (one per domain, every grouping
//! type merged into it, as casbin-rs 2.20's one role manager holds them),
//! and the walk that answers "does this name hold that role".

use foldhash::{HashMap, HashMapExt, HashSet};

/// casbin-rs's name for the role graph of groupings without a domain.
pub(crate) const DEFAULT_DOMAIN: &str = "DEFAULT";

/// Domain → member → roles granted to it directly, in policy order.
pub(crate) type RoleGraph = HashMap<String, HashMap<String, Vec<String>>>;

/// casbin-rs's role manager (`DefaultRoleManager::new(10)`) walks grants
/// breadth-first and stops counting after 10 levels, so a role 10 or more
/// levels above a name does not count there; the compiled evaluator uses
/// plain reachability. They agree exactly when no name in the graph has
/// anything 10 or more levels above it: otherwise the policy is left to
/// casbin-rs. (Its level counter advances at most once per BFS level, so
/// shallower graphs never reach the cut.)
pub(super) const CASBIN_MAX_HIERARCHY_LEVEL: usize = 10;

pub(super) fn within_casbin_depth(graph: &HashMap<String, Vec<String>>) -> bool {
    // Bounded work: a graph this expensive to check is left to casbin-rs.
    let mut budget: usize = 20_000_000;
    for start in graph.keys() {
        let mut seen: HashSet<&str> = [start.as_str()].into_iter().collect();
        let mut level: Vec<&str> = vec![start];
        for distance in 1..=CASBIN_MAX_HIERARCHY_LEVEL {
            let mut next = Vec::new();
            for name in &level {
                for parent in graph.get(*name).into_iter().flatten() {
                    budget = match budget.checked_sub(1) {
                        Some(left) => left,
                        None => return false,
                    };
                    if seen.insert(parent) {
                        next.push(parent.as_str());
                    }
                }
            }
            if next.is_empty() {
                break;
            }
            if distance == CASBIN_MAX_HIERARCHY_LEVEL {
                return false;
            }
            level = next;
        }
    }
    true
}

/// Visits every name reachable from `start` in a role graph (not `start`
/// itself), breadth-first, each once, until `reached` says to stop; true if
/// it did. Closures are usually a handful of roles and the walk runs per
/// candidate rule: up to 32 names a list on the stack is queue and visited
/// set at once, with no allocation; past that a queue and a hash set take
/// over.
pub(super) fn walk_up<'a, E>(
    graph: &'a HashMap<String, Vec<String>>,
    start: &'a str,
    mut reached: impl FnMut(&'a str) -> Result<bool, E>,
) -> Result<bool, E> {
    const SMALL: usize = 32;
    let mut small: [&str; SMALL] = [""; SMALL];
    small[0] = start;
    let mut len = 1;
    let mut large: Option<(Vec<&str>, HashSet<&str>)> = None;
    let mut next = 0;
    loop {
        let name = match &large {
            None if next < len => small[next],
            Some((queue, _)) if next < queue.len() => queue[next],
            _ => return Ok(false),
        };
        next += 1;
        for parent in graph.get(name).into_iter().flatten() {
            let parent = parent.as_str();
            let new = match &mut large {
                Some((queue, seen)) => {
                    let new = seen.insert(parent);
                    if new {
                        queue.push(parent);
                    }
                    new
                }
                None if small[..len].contains(&parent) => false,
                None if len < SMALL => {
                    small[len] = parent;
                    len += 1;
                    true
                }
                None => {
                    let mut queue = small.to_vec();
                    queue.push(parent);
                    let seen = queue.iter().copied().collect();
                    large = Some((queue, seen));
                    true
                }
            };
            if new && reached(parent)? {
                return Ok(true);
            }
        }
    }
}

/// The role graph of grouping rules (`member, role[, domain]`): each grant
/// once, in policy order; self-grants, which no walk needs, left out.
pub(crate) fn build_role_graph<'r>(
    grouping_rules: impl IntoIterator<Item = &'r [String]>,
) -> RoleGraph {
    let mut graph = RoleGraph::new();
    for rule in grouping_rules {
        if rule.len() < 2 || rule[0] == rule[1] {
            continue;
        }
        let domain = rule.get(2).map_or(DEFAULT_DOMAIN, String::as_str);
        let parents = graph
            .entry(domain.to_owned())
            .or_default()
            .entry(rule[0].clone())
            .or_default();
        if !parents.contains(&rule[1]) {
            parents.push(rule[1].clone());
        }
    }
    graph
}
