//! A loopback TCP forwarder whose target can be switched: the stable read-write address in
//! front of a replicated PostgreSQL, as a Kubernetes Service is in a cluster.
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub struct TcpProxy {
    port: u16,
    target: Arc<AtomicU16>,
    /// Bumped on every switch; connections to the old target are cut.
    generation: watch::Sender<u64>,
    task: JoinHandle<()>,
}

impl TcpProxy {
    pub async fn start(target: u16) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let target = Arc::new(AtomicU16::new(target));
        let (generation, _) = watch::channel(0u64);
        let task = tokio::spawn({
            let target = target.clone();
            let generation = generation.clone();
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    let to = target.load(Ordering::SeqCst);
                    let mut switched = generation.subscribe();
                    tokio::spawn(async move {
                        let Ok(mut upstream) = TcpStream::connect(("127.0.0.1", to)).await else {
                            return;
                        };
                        let mut client = client;
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
                            _ = switched.changed() => {}
                        }
                    });
                }
            }
        });
        TcpProxy {
            port,
            target,
            generation,
            task,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn target(&self) -> u16 {
        self.target.load(Ordering::SeqCst)
    }

    /// New connections go to `port`; open ones are cut.
    pub fn point_at(&self, port: u16) {
        if self.target.swap(port, Ordering::SeqCst) != port {
            self.generation.send_modify(|g| *g += 1);
        }
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
