//! A local HTTP server running on its own task (the API, the IoT data plane): it stops gracefully
//! on `shutdown`, and is aborted if that takes too long or if it is dropped without one.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Resolves when the server should stop accepting and finish its requests.
pub(crate) type Stopped = Pin<Box<dyn Future<Output = ()> + Send>>;

/// In-flight requests get this long after `shutdown` before the task is aborted.
const GRACE: Duration = Duration::from_secs(2);

pub(crate) struct ServerTask {
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl ServerTask {
    /// Spawns `serve(stopped)`; `name` ("the local API") is logged if it fails.
    pub fn spawn<F, Fut>(name: &'static str, serve: F) -> Self
    where
        F: FnOnce(Stopped) -> Fut,
        Fut: Future<Output = std::io::Result<()>> + Send + 'static,
    {
        let (stop, stopped) = oneshot::channel::<()>();
        let served = serve(Box::pin(async {
            let _ = stopped.await;
        }));
        let task = tokio::spawn(async move {
            if let Err(e) = served.await {
                tracing::error!("{name} stopped: {e}");
            }
        });
        Self {
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut task) = self.task.take() {
            if tokio::time::timeout(GRACE, &mut task).await.is_err() {
                task.abort();
            }
        }
    }
}

impl Drop for ServerTask {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
