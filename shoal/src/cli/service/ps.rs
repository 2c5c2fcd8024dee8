//! What `service ps` shows, before it is printed: its `--filter`s (docker's keys
//! `id`, `name`, `node`, `desired-state`; values of one key OR-ed, keys AND-ed) and
//! docker's layout, where each slot's current task comes first and the older tasks
//! of the slot follow it as ` \_ name` lines.

use std::collections::BTreeMap;

use shoal_api::{Task, TaskState};

/// The `--filter KEY=VALUE` flags, by key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TaskFilters {
    ids: Vec<String>,
    names: Vec<String>,
    nodes: Vec<String>,
    desired: Vec<TaskState>,
}

impl TaskFilters {
    /// Reads `KEY=VALUE` flags; an unknown key or desired state is an error.
    pub(crate) fn parse(flags: &[String]) -> Result<TaskFilters, String> {
        let mut f = TaskFilters::default();
        for flag in flags {
            let (key, value) =
                flag.split_once('=').ok_or_else(|| format!("--filter {flag:?} is not KEY=VALUE"))?;
            let value = value.to_owned();
            match key {
                "id" => f.ids.push(value),
                "name" => f.names.push(value),
                "node" => f.nodes.push(value),
                "desired-state" => {
                    f.desired
                        .push(TaskState::ALL.into_iter().find(|s| s.as_str() == value).ok_or_else(|| {
                        format!(
                            "--filter desired-state={value}: not a task state (running, shutdown, accepted…)"
                        )
                    })?)
                }
                _ => {
                    return Err(format!(
                        "--filter {key:?} is not a filter of tasks: use id, name, node or desired-state"
                    ));
                }
            }
        }
        Ok(f)
    }

    /// The one desired state asked for, which the API can filter by itself.
    pub(crate) fn only_desired(&self) -> Option<TaskState> {
        match self.desired.as_slice() {
            [one] => Some(*one),
            _ => None,
        }
    }

    /// Whether `task` (named `name`, on the node `hostname`) passes every key.
    pub(crate) fn keep(&self, task: &Task, name: &str, hostname: &str) -> bool {
        let any = |values: &[String], hit: &dyn Fn(&str) -> bool| {
            values.is_empty() || values.iter().any(|v| hit(v))
        };
        let node_id = task.node_id.as_deref().unwrap_or("");
        any(&self.ids, &|v| task.id.starts_with(v))
            && any(&self.names, &|v| name == v || name.starts_with(&format!("{v}.")))
            && any(&self.nodes, &|v| hostname == v || (!node_id.is_empty() && node_id.starts_with(v)))
            && (self.desired.is_empty() || self.desired.contains(&task.desired_state))
    }
}

/// One line of `service ps`: a task and whether it is an older task of the slot above.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PsLine {
    pub(crate) task: Task,
    pub(crate) nested: bool,
}

/// Tasks in docker's order: by service name, then slot (or node, for global
/// services), newest first within a slot; every task after a slot's first is nested.
pub(crate) fn arrange(tasks: Vec<Task>, service_name: impl Fn(&str) -> String) -> Vec<PsLine> {
    let mut groups: BTreeMap<(String, String, String), Vec<Task>> = BTreeMap::new();
    for t in tasks {
        let slot = match (t.slot, &t.node_id) {
            (Some(s), _) => format!("{s:020}"),
            (None, Some(n)) => n.clone(),
            (None, None) => t.id.clone(),
        };
        groups.entry((service_name(&t.service_id), t.service_id.clone(), slot)).or_default().push(t);
    }
    let mut out = Vec::new();
    for (_, mut group) in groups {
        group.sort_by(|a, b| b.meta.created_at.cmp(&a.meta.created_at).then_with(|| b.id.cmp(&a.id)));
        for (i, task) in group.into_iter().enumerate() {
            out.push(PsLine { task, nested: i > 0 });
        }
    }
    out
}

/// The ERROR cell: quoted, cut to 30 characters unless `no_trunc`.
pub(crate) fn error_cell(error: Option<&str>, no_trunc: bool) -> String {
    match error {
        None | Some("") => String::new(),
        Some(e) if !no_trunc && e.chars().count() > 30 => {
            format!("\"{}…\"", e.chars().take(29).collect::<String>())
        }
        Some(e) => format!("\"{e}\""),
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use shoal_api::{Meta, ServiceSpec, TaskStatus};

    use super::*;

    fn task(id: &str, service: &str, slot: Option<u64>, node: &str, age: i64, desired: TaskState) -> Task {
        let at = Utc.timestamp_opt(1_000_000 - age, 0).unwrap();
        Task {
            id: id.into(),
            meta: Meta::new(at),
            service_id: service.into(),
            slot,
            node_id: Some(node.into()),
            spec: ServiceSpec::new("web", "busybox").task_template,
            spec_version: 1,
            desired_state: desired,
            status: TaskStatus::new(TaskState::Running, at, "started"),
            networks: Vec::new(),
            job_iteration: None,
        }
    }

    fn names(lines: &[PsLine]) -> Vec<String> {
        lines
            .iter()
            .map(|l| format!("{}{}", if l.nested { " \\_ " } else { "" }, l.task.display_name("web")))
            .collect()
    }

    #[test]
    fn each_slot_shows_its_newest_task_first_and_nests_the_rest() {
        let tasks = vec![
            task("a", "s1", Some(2), "n1", 50, TaskState::Shutdown),
            task("b", "s1", Some(1), "n1", 40, TaskState::Shutdown),
            task("c", "s1", Some(1), "n1", 5, TaskState::Running),
            task("d", "s1", Some(2), "n1", 10, TaskState::Running),
            task("e", "s1", Some(1), "n1", 60, TaskState::Shutdown),
        ];
        let lines = arrange(tasks, |_| "web".into());
        assert_eq!(names(&lines), ["web.1", " \\_ web.1", " \\_ web.1", "web.2", " \\_ web.2"]);
        let ids: Vec<&str> = lines.iter().map(|l| l.task.id.as_str()).collect();
        assert_eq!(ids, ["c", "b", "e", "d", "a"]);
    }

    #[test]
    fn global_tasks_group_by_node() {
        let tasks = vec![
            task("a", "s1", None, "n2", 5, TaskState::Running),
            task("b", "s1", None, "n1", 5, TaskState::Running),
            task("c", "s1", None, "n1", 50, TaskState::Shutdown),
        ];
        let ids: Vec<(String, bool)> =
            arrange(tasks, |_| "web".into()).into_iter().map(|l| (l.task.id, l.nested)).collect();
        assert_eq!(ids, [("b".into(), false), ("c".into(), true), ("a".into(), false)]);
    }

    #[test]
    fn filters_or_within_a_key_and_across_keys() {
        let f = TaskFilters::parse(&[
            "desired-state=running".into(),
            "desired-state=accepted".into(),
            "node=m1".into(),
        ])
        .unwrap();
        let running = task("abc", "s1", Some(1), "n1", 0, TaskState::Running);
        let shut = task("abd", "s1", Some(1), "n1", 0, TaskState::Shutdown);
        assert!(f.keep(&running, "web.1", "m1"));
        assert!(!f.keep(&running, "web.1", "m2"), "node is AND-ed");
        assert!(!f.keep(&shut, "web.1", "m1"));
        let f = TaskFilters::parse(&["id=abd".into(), "name=web.1".into()]).unwrap();
        assert!(f.keep(&shut, "web.1", "") && !f.keep(&running, "web.1", ""));
        assert!(!f.keep(&shut, "web.10", ""), "web.1 is not web.10");
        let f = TaskFilters::parse(&["name=web".into(), "node=n1".into()]).unwrap();
        assert!(f.keep(&running, "web.1", "m1"), "a service name and a node id prefix match");
        assert!(TaskFilters::parse(&["colour=red".into()]).unwrap_err().contains("desired-state"));
        assert!(TaskFilters::parse(&["desired-state=sleepy".into()]).is_err());
        assert!(TaskFilters::parse(&["name".into()]).is_err());
    }

    #[test]
    fn errors_are_quoted_and_cut_unless_no_trunc() {
        let long = "starting container failed: no such image shoal/busybox:2";
        assert_eq!(error_cell(Some(long), false), "\"starting container failed: no…\"");
        assert_eq!(error_cell(Some(long), true), format!("\"{long}\""));
        assert_eq!(error_cell(None, false), "");
    }
}
