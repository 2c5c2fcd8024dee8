//! The wait of `service create`, `update`, `scale` and `rollback` until the service
//! converges, shown as docker shows it: an `overall progress: N out of M tasks` line,
//! one line per slot (per node for global services) with the task's state and a bar
//! at its state's number out of 9, errors in place of the bar, then `verify:` while
//! the tasks must stay up for the service's update monitor.
//!
//! [`Tracker`] is the pure part: a snapshot of the service, its tasks and the down
//! nodes in, lines and an outcome out. [`follow`] polls the API every 200 ms as
//! docker does (one read of the service, its tasks and the nodes per round) and
//! draws the lines: bars with `indicatif` on a terminal, plain lines that are printed
//! when they change everywhere else.

use std::collections::{BTreeMap, BTreeSet};
use std::io::IsTerminal as _;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use shoal_api::client::Client;
use shoal_api::service::{UpdateState, UpdateStatus};
use shoal_api::wire::{ReadOptions, TaskFilter};
use shoal_api::{Service, ServiceMode, Task, TaskSpec, TaskState};

/// Slots shown one line each up to this many replicas (docker's limit).
const MAX_SLOT_LINES: u64 = 20;
/// The number of the RUNNING state, the end of a slot's bar.
const STATE_STEPS: u64 = 9;
/// Errors are cut to this many characters.
const ERROR_WIDTH: usize = 75;
/// How often the API is read.
const POLL: Duration = Duration::from_millis(200);

/// What the service, its tasks and its nodes look like at one moment.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Snapshot<'a> {
    pub(crate) service: &'a Service,
    /// The service's tasks.
    pub(crate) tasks: &'a [Task],
    /// Nodes that are down: their tasks do not count.
    pub(crate) down: &'a BTreeSet<String>,
}

/// One line of the display: `key: text`, with a bar at `bar` out of 9 when set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Line {
    pub(crate) key: String,
    pub(crate) text: String,
    pub(crate) bar: Option<u64>,
}

impl Line {
    fn plain(key: &str, text: impl Into<String>) -> Line {
        Line { key: key.to_owned(), text: text.into(), bar: None }
    }
}

/// Where the wait is after a round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Not converged yet (or being verified).
    Waiting,
    /// Converged and stable (or a job complete).
    Done,
    /// The rollout stopped: the error to report.
    Failed(String),
}

/// The pure state of a wait: which slot got which line, and since when the service
/// has looked converged.
#[derive(Debug)]
pub(crate) struct Tracker {
    /// The service as the user named it, for the `verify:` line.
    name: String,
    /// The rollout status before the command's write: left as it was, it is not news
    /// (a scale does not touch a paused update).
    stale: Option<UpdateStatus>,
    /// A finished rollback is what was asked for (`service rollback`).
    rollback_asked: bool,
    /// Slot (or node) → its line's number, in the order first seen.
    labels: BTreeMap<String, u64>,
    converged_at: Option<Duration>,
    verify: Option<String>,
}

impl Tracker {
    /// A wait for `name`; `stale` is the service's rollout status before the write.
    pub(crate) fn new(name: &str, stale: Option<UpdateStatus>, rollback_asked: bool) -> Tracker {
        Tracker {
            name: name.to_owned(),
            stale,
            rollback_asked,
            labels: BTreeMap::new(),
            converged_at: None,
            verify: None,
        }
    }

    /// One round: the lines to show and whether the wait is over, `now` being the
    /// time since the wait began.
    pub(crate) fn step(&mut self, snap: Snapshot<'_>, now: Duration) -> (Vec<Line>, Outcome) {
        let svc = snap.service;
        let status = svc.update_status.as_ref().filter(|s| Some(*s) != self.stale.as_ref());
        let state = status.map(|s| s.state);
        let rolling_back = matches!(
            state,
            Some(UpdateState::RollbackStarted | UpdateState::RollbackPaused | UpdateState::RollbackCompleted)
        );

        let mut lines = Vec::new();
        if let Some(s) = status.filter(|_| rolling_back) {
            lines.push(Line::plain("rollback", s.message.clone()));
        }
        let job = matches!(svc.spec.mode, ServiceMode::ReplicatedJob { .. } | ServiceMode::GlobalJob);
        let global = matches!(svc.spec.mode, ServiceMode::Global | ServiceMode::GlobalJob);
        let (done, total, slot_lines) = self.slots(snap, job);
        let overall = if rolling_back { "rolling back update" } else { "overall progress" };
        let text = if total == 0 && global {
            "waiting for new tasks".to_owned()
        } else if job {
            format!("{done} out of {total} tasks complete")
        } else {
            format!("{done} out of {total} tasks")
        };
        lines.push(Line::plain(overall, text));
        lines.extend(slot_lines);

        let failure = |what: &str, s: &UpdateStatus| {
            let reason = s.message.split_once("paused: ").map_or(s.message.as_str(), |(_, r)| r);
            let mut msg = format!("service {what} paused: {reason}");
            if let Some((task, error)) = last_error(svc, snap.tasks, s) {
                msg.push_str(&format!(" ({task}: {error})"));
            }
            msg
        };
        match (state, status) {
            (Some(UpdateState::Paused), Some(s)) => return (lines, Outcome::Failed(failure("update", s))),
            (Some(UpdateState::RollbackPaused), Some(s)) => {
                return (lines, Outcome::Failed(failure("rollback", s)));
            }
            _ => {}
        }

        // No replica wanted is converged; no node with a task of a global service is not yet.
        let converged = if total == 0 { !global } else { done >= total };
        if job {
            if converged {
                lines.push(Line::plain("job", "job complete"));
                return (lines, Outcome::Done);
            }
            return (lines, Outcome::Waiting);
        }
        let monitor =
            if rolling_back { svc.spec.rollback_config.monitor } else { svc.spec.update_config.monitor };
        let mut outcome = Outcome::Waiting;
        if converged {
            let since = *self.converged_at.get_or_insert(now);
            let waited = now.saturating_sub(since);
            if waited >= monitor {
                self.verify = Some(format!("Service {} converged", self.name));
                outcome = match status {
                    Some(s) if state == Some(UpdateState::RollbackCompleted) && !self.rollback_asked => {
                        Outcome::Failed(format!("service rolled back: {}", s.message))
                    }
                    _ => Outcome::Done,
                };
            } else {
                let left = (monitor - waited).as_millis().div_ceil(1000).max(1);
                self.verify = Some(format!("Waiting {left} seconds to verify that tasks are stable..."));
            }
        } else if self.converged_at.take().is_some() {
            self.verify = Some("Detected task failure".to_owned());
        }
        if let Some(v) = &self.verify {
            lines.push(Line::plain("verify", v.clone()));
        }
        (lines, outcome)
    }

    /// Tasks running (complete, for jobs) out of those wanted, and the per-slot lines.
    fn slots(&mut self, snap: Snapshot<'_>, job: bool) -> (u64, u64, Vec<Line>) {
        let svc = snap.service;
        let template = &svc.spec.task_template;
        let mut current: BTreeMap<String, &Task> = BTreeMap::new();
        for t in snap.tasks.iter().filter(|t| t.service_id == svc.id && runs(&t.spec, template)) {
            if t.node_id.as_ref().is_some_and(|n| snap.down.contains(n)) {
                continue;
            }
            let key = match (t.slot, &t.node_id) {
                (Some(s), _) => format!("{s:020}"),
                (None, Some(n)) => n.clone(),
                (None, None) => continue,
            };
            // On a collision the lower desired state wins, then the lower observed one.
            let better =
                |old: &&Task| (t.desired_state, t.status.state) < (old.desired_state, old.status.state);
            if current.get(&key).is_none_or(better) {
                current.insert(key, t);
            }
        }
        let total = match svc.spec.mode {
            ServiceMode::Replicated { replicas } => replicas,
            ServiceMode::ReplicatedJob { total_completions, max_concurrent } => {
                total_completions.unwrap_or(max_concurrent)
            }
            ServiceMode::Global | ServiceMode::GlobalJob => current.len() as u64,
        };
        let global = matches!(svc.spec.mode, ServiceMode::Global | ServiceMode::GlobalJob);
        let mut done = 0;
        let mut lines = Vec::new();
        for (key, t) in current {
            let finished = if job {
                t.status.state == TaskState::Complete
            } else {
                !t.desired_state.is_terminal() && t.status.state == TaskState::Running
            };
            let next = self.labels.len() as u64 + 1;
            let n = *self.labels.entry(key).or_insert(next);
            if n > total {
                continue;
            }
            done += u64::from(finished);
            if total > MAX_SLOT_LINES {
                continue;
            }
            let label = match (&t.node_id, global) {
                (Some(node), true) => node.chars().take(12).collect(),
                _ => format!("{n}/{total}"),
            };
            match t.status.error.as_deref().filter(|e| !e.is_empty()) {
                Some(e) => lines.push(Line::plain(&label, cut(e))),
                None if !t.desired_state.is_terminal() || finished => lines.push(Line {
                    key: label,
                    text: t.status.state.as_str().to_owned(),
                    bar: Some(step_of(t.status.state)),
                }),
                None => {}
            }
        }
        (done, total, lines)
    }
}

/// Whether a task runs what the template asks, placement aside: the manager's rule
/// for a task that an update must replace, seen from the client.
fn runs(task: &TaskSpec, template: &TaskSpec) -> bool {
    task.container == template.container
        && task.resources == template.resources
        && task.restart_policy == template.restart_policy
        && task.networks == template.networks
        && task.force_update == template.force_update
}

/// A state's place on the way to RUNNING (docker's numbering: NEW 1 … RUNNING 9).
fn step_of(state: TaskState) -> u64 {
    match state {
        TaskState::New => 1,
        TaskState::Pending => 3,
        TaskState::Assigned => 4,
        TaskState::Accepted => 5,
        TaskState::Preparing => 6,
        TaskState::Ready => 7,
        TaskState::Starting => 8,
        _ => STATE_STEPS,
    }
}

/// An error on one line, cut to [`ERROR_WIDTH`] characters.
fn cut(error: &str) -> String {
    let flat = error.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= ERROR_WIDTH {
        return flat;
    }
    flat.chars().take(ERROR_WIDTH - 1).chain(['…']).collect()
}

/// The newest error of a task made since the rollout began, with the task's name.
fn last_error(svc: &Service, tasks: &[Task], status: &UpdateStatus) -> Option<(String, String)> {
    tasks
        .iter()
        .filter(|t| status.started_at.is_none_or(|s| t.meta.created_at >= s))
        .filter_map(|t| Some((t, t.status.error.as_deref().filter(|e| !e.is_empty())?)))
        .max_by_key(|(t, _)| t.status.timestamp)
        .map(|(t, e)| (t.display_name(&svc.spec.name), e.to_owned()))
}

/// How the wait is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Show {
    /// Bars on a terminal, plain lines elsewhere.
    Progress,
    /// Nothing (`--quiet`).
    Nothing,
}

/// Waits until `service` converges, showing progress; an error when its rollout
/// paused or rolled back. Ctrl-C leaves it running in the background (success).
pub(crate) async fn follow(
    client: &Client,
    service: &str,
    mut tracker: Tracker,
    show: Show,
) -> anyhow::Result<()> {
    let mut screen = Screen::new(show);
    let start = Instant::now();
    let mut interrupted = std::pin::pin!(tokio::signal::ctrl_c());
    let mut tick = tokio::time::interval(POLL);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = &mut interrupted => {
                screen.finish();
                println!("Operation continuing in background.");
                println!("Use `shoal service ps {service}` to check progress.");
                return Ok(());
            }
        }
        let svc = client.service(service).await?;
        let tasks = client.tasks(&TaskFilter { service: Some(svc.id.clone()), ..Default::default() }).await?;
        let down: BTreeSet<String> = client
            .nodes(ReadOptions::default())
            .await?
            .into_iter()
            .filter(|n| n.status.state == shoal_api::node::NodeState::Down)
            .map(|n| n.id)
            .collect();
        let (lines, outcome) =
            tracker.step(Snapshot { service: &svc, tasks: &tasks, down: &down }, start.elapsed());
        screen.show(&lines);
        match outcome {
            Outcome::Waiting => {}
            Outcome::Done => {
                screen.finish();
                return Ok(());
            }
            Outcome::Failed(e) => {
                screen.finish();
                anyhow::bail!(e);
            }
        }
    }
}

/// The display: `indicatif` bars, plain lines, or nothing.
enum Screen {
    Bars { multi: MultiProgress, bars: BTreeMap<String, ProgressBar> },
    Plain { shown: BTreeMap<String, String> },
    Quiet,
}

impl Screen {
    fn new(show: Show) -> Screen {
        let dumb = std::env::var("TERM").is_ok_and(|t| t == "dumb");
        match show {
            Show::Nothing => Screen::Quiet,
            Show::Progress if std::io::stdout().is_terminal() && !dumb => Screen::Bars {
                multi: MultiProgress::with_draw_target(ProgressDrawTarget::stdout()),
                bars: BTreeMap::new(),
            },
            Show::Progress => Screen::Plain { shown: BTreeMap::new() },
        }
    }

    fn show(&mut self, lines: &[Line]) {
        match self {
            Screen::Quiet => {}
            Screen::Plain { shown } => {
                for l in lines {
                    if shown.get(&l.key) != Some(&l.text) {
                        println!("{}: {}", l.key, l.text);
                        shown.insert(l.key.clone(), l.text.clone());
                    }
                }
            }
            Screen::Bars { multi, bars } => {
                for l in lines {
                    let template =
                        if l.bar.is_some() { "{prefix}: {msg:<9} {bar:50}" } else { "{prefix}: {msg}" };
                    let style = ProgressStyle::with_template(template)
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> ");
                    let bar = bars.entry(l.key.clone()).or_insert_with(|| {
                        multi.add(
                            ProgressBar::new(STATE_STEPS)
                                .with_style(style.clone())
                                .with_prefix(l.key.clone())
                                .with_message(l.text.clone())
                                .with_position(l.bar.unwrap_or(0)),
                        )
                    });
                    bar.set_style(style);
                    bar.set_position(l.bar.unwrap_or(0));
                    bar.set_message(l.text.clone());
                }
            }
        }
    }

    /// Leaves the last lines on the screen.
    fn finish(&mut self) {
        if let Screen::Bars { bars, .. } = self {
            for b in bars.values() {
                b.abandon();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, TimeZone, Utc};
    use shoal_api::service::UpdateStatus;
    use shoal_api::{Meta, ServiceSpec, TaskStatus};

    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_000_000 + s, 0).unwrap()
    }

    fn service(replicas: u64, image: &str) -> Service {
        let mut spec = ServiceSpec::new("web", image);
        spec.mode = ServiceMode::Replicated { replicas };
        spec.update_config.monitor = Duration::from_secs(2);
        Service {
            id: "svc".into(),
            meta: Meta::new(at(0)),
            spec,
            previous_spec: None,
            update_status: None,
            endpoint: Default::default(),
        }
    }

    fn task(id: &str, svc: &Service, image: &str, slot: u64, state: TaskState, desired: TaskState) -> Task {
        let mut spec = svc.spec.task_template.clone();
        spec.container.image = image.into();
        Task {
            id: id.into(),
            meta: Meta::new(at(1)),
            service_id: svc.id.clone(),
            slot: Some(slot),
            node_id: Some("node1".into()),
            spec,
            spec_version: 1,
            desired_state: desired,
            status: TaskStatus::new(state, at(2), ""),
            networks: Vec::new(),
            job_iteration: None,
        }
    }

    fn run(t: &mut Tracker, svc: &Service, tasks: &[Task], secs: u64) -> (Vec<String>, Outcome) {
        let down = BTreeSet::new();
        let (lines, outcome) =
            t.step(Snapshot { service: svc, tasks, down: &down }, Duration::from_secs(secs));
        let text = lines
            .iter()
            .map(|l| match l.bar {
                Some(b) => format!("{}: {} [{b}/9]", l.key, l.text),
                None => format!("{}: {}", l.key, l.text),
            })
            .collect();
        (text, outcome)
    }

    #[test]
    fn a_rolling_update_shows_each_slot_then_verifies() {
        let svc = service(2, "v2");
        let mut t = Tracker::new("web", None, false);
        let tasks = [
            task("old1", &svc, "v1", 1, TaskState::Running, TaskState::Shutdown),
            task("new1", &svc, "v2", 1, TaskState::Preparing, TaskState::Running),
            task("old2", &svc, "v1", 2, TaskState::Running, TaskState::Running),
        ];
        let (lines, outcome) = run(&mut t, &svc, &tasks, 0);
        assert_eq!(lines, ["overall progress: 0 out of 2 tasks", "1/2: preparing [6/9]"]);
        assert_eq!(outcome, Outcome::Waiting);

        let tasks = [
            task("new1", &svc, "v2", 1, TaskState::Running, TaskState::Running),
            task("new2", &svc, "v2", 2, TaskState::Running, TaskState::Running),
        ];
        let (lines, outcome) = run(&mut t, &svc, &tasks, 1);
        assert_eq!(
            lines,
            [
                "overall progress: 2 out of 2 tasks",
                "1/2: running [9/9]",
                "2/2: running [9/9]",
                "verify: Waiting 2 seconds to verify that tasks are stable..."
            ]
        );
        assert_eq!(outcome, Outcome::Waiting);
        let (lines, outcome) = run(&mut t, &svc, &tasks, 3);
        assert_eq!(lines.last().unwrap(), "verify: Service web converged");
        assert_eq!(outcome, Outcome::Done);
    }

    #[test]
    fn a_lost_task_restarts_the_verify_clock() {
        let svc = service(1, "v2");
        let mut t = Tracker::new("web", None, false);
        let up = [task("a", &svc, "v2", 1, TaskState::Running, TaskState::Running)];
        assert_eq!(run(&mut t, &svc, &up, 0).1, Outcome::Waiting);
        let mut failed = up[0].clone();
        failed.status.state = TaskState::Failed;
        failed.desired_state = TaskState::Shutdown;
        failed.status.error = Some("exited with status 1\nand a second line".into());
        let (lines, _) = run(&mut t, &svc, &[failed], 1);
        assert_eq!(
            lines,
            [
                "overall progress: 0 out of 1 tasks",
                "1/1: exited with status 1 and a second line",
                "verify: Detected task failure"
            ]
        );
        // Converged again at 5 s: the monitor (2 s) counts from there.
        assert_eq!(run(&mut t, &svc, &up, 5).1, Outcome::Waiting);
        assert_eq!(run(&mut t, &svc, &up, 6).1, Outcome::Waiting);
        assert_eq!(run(&mut t, &svc, &up, 7).1, Outcome::Done);
    }

    #[test]
    fn a_paused_update_fails_with_the_task_error() {
        let mut svc = service(2, "v2");
        let mut bad = task("bad", &svc, "v2", 1, TaskState::Failed, TaskState::Shutdown);
        bad.status.error = Some("x".repeat(100));
        svc.update_status = Some(UpdateStatus {
            state: UpdateState::Paused,
            started_at: Some(at(0)),
            completed_at: None,
            message: "update paused: task bad failed or did not run in time".into(),
        });
        let mut t = Tracker::new("web", None, false);
        let (lines, outcome) = run(&mut t, &svc, std::slice::from_ref(&bad), 0);
        assert_eq!(lines[1], format!("1/2: {}…", "x".repeat(74)));
        let Outcome::Failed(e) = outcome else { panic!("{outcome:?}") };
        assert_eq!(
            e,
            format!(
                "service update paused: task bad failed or did not run in time (web.1: {})",
                "x".repeat(100)
            )
        );

        // The same paused status from before a scale is not news.
        let mut t = Tracker::new("web", svc.update_status.clone(), false);
        assert_eq!(run(&mut t, &svc, &[bad], 0).1, Outcome::Waiting);
    }

    #[test]
    fn a_rollback_is_shown_and_fails_an_update_but_not_a_rollback() {
        let mut svc = service(1, "v1");
        svc.spec.rollback_config.monitor = Duration::ZERO;
        svc.update_status = Some(UpdateStatus {
            state: UpdateState::RollbackCompleted,
            started_at: Some(at(0)),
            completed_at: None,
            message: "update rolled back: task b failed or did not run in time".into(),
        });
        let tasks = [task("a", &svc, "v1", 1, TaskState::Running, TaskState::Running)];
        let (lines, outcome) = run(&mut Tracker::new("web", None, false), &svc, &tasks, 0);
        assert_eq!(lines[0], "rollback: update rolled back: task b failed or did not run in time");
        assert_eq!(lines[1], "rolling back update: 1 out of 1 tasks");
        assert!(
            matches!(outcome, Outcome::Failed(e) if e.starts_with("service rolled back: update rolled back"))
        );
        let (_, outcome) = run(&mut Tracker::new("web", None, true), &svc, &tasks, 0);
        assert_eq!(outcome, Outcome::Done);
    }

    #[test]
    fn slots_are_numbered_as_first_seen_and_tasks_on_down_nodes_skipped() {
        let svc = service(2, "v1");
        let mut t = Tracker::new("web", None, false);
        let mut far = task("b", &svc, "v1", 7, TaskState::Running, TaskState::Running);
        far.node_id = Some("gone".into());
        let tasks = [task("a", &svc, "v1", 5, TaskState::Assigned, TaskState::Running), far];
        let down = BTreeSet::from(["gone".to_owned()]);
        let (lines, _) = t.step(Snapshot { service: &svc, tasks: &tasks, down: &down }, Duration::ZERO);
        let keys: Vec<&str> = lines.iter().map(|l| l.key.as_str()).collect();
        assert_eq!(keys, ["overall progress", "1/2"]);
        assert_eq!(lines[1].bar, Some(4));
    }

    #[test]
    fn global_services_key_lines_by_node() {
        let mut svc = service(1, "v1");
        svc.spec.mode = ServiceMode::Global;
        let mut t = Tracker::new("web", None, false);
        assert_eq!(run(&mut t, &svc, &[], 0).0, ["overall progress: waiting for new tasks"]);
        let mut a = task("a", &svc, "v1", 0, TaskState::Running, TaskState::Running);
        a.slot = None;
        a.node_id = Some("abcdefghijklmnopqrstuvwxy".into());
        let (lines, _) = run(&mut t, &svc, &[a], 0);
        assert_eq!(lines[..2], ["overall progress: 1 out of 1 tasks", "abcdefghijkl: running [9/9]"]);
    }

    #[test]
    fn a_global_job_waits_for_its_tasks() {
        let mut svc = service(1, "v1");
        svc.spec.mode = ServiceMode::GlobalJob;
        let mut t = Tracker::new("web", None, false);
        assert_eq!(run(&mut t, &svc, &[], 0).1, Outcome::Waiting);
    }

    #[test]
    fn a_job_ends_when_complete() {
        let mut svc = service(1, "v1");
        svc.spec.mode = ServiceMode::ReplicatedJob { total_completions: Some(1), max_concurrent: 1 };
        let mut t = Tracker::new("web", None, false);
        let done = [task("a", &svc, "v1", 1, TaskState::Complete, TaskState::Complete)];
        let (lines, outcome) = run(&mut t, &svc, &done, 0);
        assert_eq!(lines.last().unwrap(), "job: job complete");
        assert_eq!(outcome, Outcome::Done);
    }
}
