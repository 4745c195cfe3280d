//! The demo's view of the live event stream: a client of the demo tenant's stream, running beside
//! the demonstration, counting what it is told.

use anyhow::Result;
use cellbridge::events::subscription::Subscription;
use devstack::Devstack;
use live_client::{LiveClient, LiveError, LiveOptions};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone, Default)]
pub struct Tally {
    pub by_type: BTreeMap<String, u64>,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    /// The latest `bulkChange.*` event of each bulk change: its counts as the stream told them.
    pub bulk_changes: BTreeMap<String, serde_json::Value>,
    pub gaps: u64,
    pub duplicates: u64,
    pub reconnects: u32,
    pub error: Option<String>,
}

impl Tally {
    pub fn events(&self) -> u64 {
        self.by_type.values().sum()
    }

    /// `bulkChange.progress 41, sim.status 299, ...`
    pub fn kinds(&self) -> String {
        self.by_type
            .iter()
            .map(|(kind, n)| format!("{kind} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

pub struct LiveWatcher {
    tally: Arc<Mutex<Tally>>,
    task: tokio::task::JoinHandle<()>,
}

impl LiveWatcher {
    /// Follows the stream of `username`'s tenant until dropped.
    pub async fn start(stack: &Devstack, username: &str, password: &str) -> Result<Self> {
        let token = stack.login(username, password).await?;
        let mut client = LiveClient::connect(
            &stack.live_url(),
            &token,
            Subscription::default(),
            LiveOptions::default(),
        )
        .await?;
        let tally = Arc::new(Mutex::new(Tally::default()));
        let shared = tally.clone();
        let task = tokio::spawn(async move {
            loop {
                let next = client.next(Duration::from_secs(3600)).await;
                let stats = client.stats();
                let mut tally = shared
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                tally.gaps = stats.gaps;
                tally.duplicates = stats.duplicates;
                tally.reconnects = stats.connections.saturating_sub(1);
                match next {
                    Ok(event) => {
                        *tally
                            .by_type
                            .entry(event.kind.as_str().to_owned())
                            .or_default() += 1;
                        tally.first_seq.get_or_insert(event.seq);
                        tally.last_seq = Some(event.seq);
                        if event.kind.as_str().starts_with("bulkChange.") {
                            tally
                                .bulk_changes
                                .insert(event.subject.clone(), event.data.clone());
                        }
                    }
                    Err(LiveError::Timeout(_)) => {}
                    Err(error) => {
                        tally.error = Some(error.to_string());
                        return;
                    }
                }
            }
        });
        Ok(Self { tally, task })
    }

    pub fn tally(&self) -> Tally {
        self.tally
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// One line for the demonstration's summary.
    pub fn line(&self) -> String {
        let tally = self.tally();
        if let Some(error) = &tally.error {
            return format!("the stream stopped: {error}");
        }
        match (tally.first_seq, tally.last_seq) {
            (Some(first), Some(last)) => format!(
                "{} events (seq {first}..{last}, {} gaps, {} duplicates, {} reconnects): {}",
                tally.events(),
                tally.gaps,
                tally.duplicates,
                tally.reconnects,
                tally.kinds()
            ),
            _ => "no events yet".to_owned(),
        }
    }
}

impl Drop for LiveWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}
