//! The `depends_on` graph: the order to start processes in, and the cycle that makes an order
//! impossible. Processes are indices in file order; `deps[i]` lists what process `i` depends on.

/// A `depends_on` cycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cycle {
    /// The processes around the cycle, the first repeated at the end: `[a, b, a]`.
    pub path: Vec<usize>,
    /// The edge that closes the cycle: (process, index in its `depends_on`).
    pub closing: (usize, usize),
}

/// A topological order: each process after all it depends on; among processes that are ready
/// at the same time, the earlier in the file first. Processes caught in a cycle (which
/// validation rejects) come last, in file order.
pub fn start_order(deps: &[Vec<usize>]) -> Vec<usize> {
    let n = deps.len();
    let mut placed = vec![false; n];
    let mut order = Vec::with_capacity(n);
    while order.len() < n {
        let ready =
            (0..n).find(|&i| !placed[i] && deps[i].iter().all(|&d| d >= n || d == i || placed[d]));
        match ready {
            Some(i) => {
                placed[i] = true;
                order.push(i);
            }
            None => {
                order.extend((0..n).filter(|&i| !placed[i]));
                break;
            }
        }
    }
    order
}

/// The first cycle a depth-first walk in file order meets, if any.
pub fn find_cycle(deps: &[Vec<usize>]) -> Option<Cycle> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    let n = deps.len();
    let mut mark = vec![Mark::New; n];
    for root in 0..n {
        if mark[root] != Mark::New {
            continue;
        }
        // (node, index of the next edge to follow)
        let mut stack: Vec<(usize, usize)> = vec![(root, 0)];
        mark[root] = Mark::OnPath;
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            let edge = *next;
            match deps[node].get(edge) {
                None => {
                    mark[node] = Mark::Done;
                    stack.pop();
                }
                Some(&dep) => {
                    *next += 1;
                    if dep >= n {
                        continue;
                    }
                    match mark[dep] {
                        Mark::Done => {}
                        Mark::New => {
                            mark[dep] = Mark::OnPath;
                            stack.push((dep, 0));
                        }
                        Mark::OnPath => {
                            let start = stack.iter().position(|&(p, _)| p == dep).unwrap_or(0);
                            let mut path: Vec<usize> =
                                stack[start..].iter().map(|&(p, _)| p).collect();
                            path.push(dep);
                            return Some(Cycle {
                                path,
                                closing: (node, edge),
                            });
                        }
                    }
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_order_without_dependencies() {
        assert_eq!(start_order(&[vec![], vec![], vec![]]), vec![0, 1, 2]);
    }

    #[test]
    fn dependencies_first_then_file_order() {
        // 0 depends on 2; 1 is free; 3 depends on 0 and 1.
        let deps = vec![vec![2], vec![], vec![], vec![0, 1]];
        assert_eq!(start_order(&deps), vec![1, 2, 0, 3]);
        // A chain written backwards starts from its end.
        let chain = vec![vec![1], vec![2], vec![]];
        assert_eq!(start_order(&chain), vec![2, 1, 0]);
    }

    #[test]
    fn cycles_are_found_and_named() {
        assert_eq!(find_cycle(&[vec![1], vec![2], vec![]]), None);
        assert_eq!(
            find_cycle(&[vec![1], vec![0]]),
            Some(Cycle {
                path: vec![0, 1, 0],
                closing: (1, 0)
            })
        );
        assert_eq!(
            find_cycle(&[vec![], vec![1]]),
            Some(Cycle {
                path: vec![1, 1],
                closing: (1, 0)
            })
        );
        // 0 -> 1 -> 2 -> 3, and 2 -> 1: the cycle is 1 -> 2 -> 1, closed by 2's second
        // dependency.
        assert_eq!(
            find_cycle(&[vec![1], vec![2], vec![3, 1], vec![]]),
            Some(Cycle {
                path: vec![1, 2, 1],
                closing: (2, 1)
            })
        );
        // A diamond is not a cycle.
        assert_eq!(find_cycle(&[vec![1, 2], vec![3], vec![3], vec![]]), None);
    }

    #[test]
    fn a_cycle_does_not_lose_processes() {
        assert_eq!(start_order(&[vec![1], vec![0], vec![]]), vec![2, 0, 1]);
    }
}
