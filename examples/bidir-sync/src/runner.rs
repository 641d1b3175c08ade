//! Links running in this process: started together, watched, restarted, stopped together.
//!
//! Each link runs [`Link::run`] in a task of its own. That loop already survives transient
//! failures (it reconnects with capped exponential backoff and logs why); when it returns an
//! error, the failure is definite and needs a person, so the runner records it and leaves the
//! other links alone. [`Runner::restart_failed`] starts failed links again (the `run` command
//! does it on SIGHUP, after someone fixed the cause). [`Runner::shutdown`] tells every link to
//! stop: each finishes or rolls back what is in flight, reports its durable position to its
//! source and closes — progress is committed with the data on the target, so nothing is lost
//! or applied twice whatever moment the stop comes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use pgrepl_apply::{ApplyError, Link, LinkConfig, LinkNames, LinkStats};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// One link and what the runner knows of it.
#[derive(Debug)]
struct Entry {
    link: Arc<Link>,
    running: bool,
    failure: Option<String>,
}

/// Links running as tasks.
#[derive(Debug)]
pub(crate) struct Runner {
    entries: Vec<Entry>,
    tasks: JoinSet<Result<(), ApplyError>>,
    /// Which entry each task runs.
    task_links: HashMap<tokio::task::Id, usize>,
    stop: watch::Sender<bool>,
}

/// A finished link.
#[derive(Debug)]
pub(crate) struct Finished {
    /// Its names.
    pub(crate) names: LinkNames,
    /// `None` when it stopped because it was asked to, else why it failed.
    pub(crate) failure: Option<String>,
}

impl Runner {
    /// Starts one task per link.
    pub(crate) fn start(configs: Vec<LinkConfig>) -> Runner {
        let (stop, _) = watch::channel(false);
        let mut runner = Runner {
            entries: configs
                .into_iter()
                .map(|c| Entry {
                    link: Arc::new(Link::new(c)),
                    running: false,
                    failure: None,
                })
                .collect(),
            tasks: JoinSet::new(),
            task_links: HashMap::new(),
            stop,
        };
        for i in 0..runner.entries.len() {
            runner.spawn(i);
        }
        runner
    }

    fn spawn(&mut self, i: usize) {
        let Some(entry) = self.entries.get_mut(i) else {
            return;
        };
        let link = Arc::clone(&entry.link);
        let rx = self.stop.subscribe();
        entry.running = true;
        entry.failure = None;
        let task = self.tasks.spawn(async move { link.run(rx).await });
        self.task_links.insert(task.id(), i);
    }

    /// Every link's names and live statistics.
    pub(crate) fn stats(&self) -> Vec<(LinkNames, Arc<LinkStats>)> {
        self.entries
            .iter()
            .map(|e| (e.link.names().clone(), e.link.stats()))
            .collect()
    }

    /// How many links are running.
    pub(crate) fn running(&self) -> usize {
        self.entries.iter().filter(|e| e.running).count()
    }

    /// The failed links and why.
    pub(crate) fn failures(&self) -> Vec<(LinkNames, String)> {
        self.entries
            .iter()
            .filter_map(|e| Some((e.link.names().clone(), e.failure.clone()?)))
            .collect()
    }

    /// Waits until a link's task ends (pending forever when none runs).
    pub(crate) async fn next_finished(&mut self) -> Finished {
        loop {
            let Some(joined) = self.tasks.join_next_with_id().await else {
                std::future::pending::<()>().await;
                continue;
            };
            let (id, failure) = match joined {
                Ok((id, Ok(()))) => (id, None),
                Ok((id, Err(e))) => (id, Some(e.to_string())),
                Err(e) => (
                    e.id(),
                    Some(format!("the link's task ended abnormally: {e}")),
                ),
            };
            let Some(i) = self.task_links.remove(&id) else {
                continue;
            };
            let Some(entry) = self.entries.get_mut(i) else {
                continue;
            };
            entry.running = false;
            entry.failure.clone_from(&failure);
            return Finished {
                names: entry.link.names().clone(),
                failure,
            };
        }
    }

    /// Starts every failed link again; returns their names.
    pub(crate) fn restart_failed(&mut self) -> Vec<LinkNames> {
        let failed: Vec<usize> = (0..self.entries.len())
            .filter(|i| {
                self.entries
                    .get(*i)
                    .is_some_and(|e| !e.running && e.failure.is_some())
            })
            .collect();
        let mut names = Vec::new();
        for i in failed {
            if let Some(e) = self.entries.get(i) {
                names.push(e.link.names().clone());
            }
            self.spawn(i);
        }
        names
    }

    /// Tells every link to stop and waits up to `grace` for them; links still running then are
    /// cut off (their connections close; the targets roll back what was in flight). Returns
    /// whether every link stopped by itself in time.
    pub(crate) async fn shutdown(&mut self, grace: Duration) -> bool {
        let _ = self.stop.send(true);
        let deadline = tokio::time::Instant::now() + grace;
        while self.running() > 0 {
            match tokio::time::timeout_at(deadline, self.next_finished()).await {
                Ok(_) => {}
                Err(_) => {
                    self.tasks.abort_all();
                    while self.tasks.join_next().await.is_some() {}
                    self.task_links.clear();
                    for e in &mut self.entries {
                        e.running = false;
                    }
                    return false;
                }
            }
        }
        true
    }
}
