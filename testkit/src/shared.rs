//! A fixture shared by the tests of one test binary, so a slow set-up (a
//! pipeline, data sent through it and stored) is done once while each check
//! is its own `#[tokio::test]` (the first failure does not hide the rest).
//!
//! Every `#[tokio::test]` has its own runtime, which ends with the test; tasks
//! spawned on it die then. So the set-up runs on one background runtime that
//! lives as long as the process ([`background`]): services started there keep
//! serving every test. Only runtime-independent handles may be used from the
//! tests — in particular no HTTP client with pooled connections (a pooled
//! connection belongs to the runtime of the test that opened it): build one
//! per test, or use [`Pipeline::start_shared`](crate::Pipeline::start_shared).
//!
//! Tests take a [`Lease`] from [`Shared::get`]; the first one sets the fixture
//! up. When the declared number of tests has released its lease and none is
//! held, the fixture is torn down ([`Fixture::teardown`]: services stopped,
//! database and keys dropped), before the last test reports. A test that
//! asks after that (more tests than declared) gets a fresh set-up; fewer
//! (a filtered run) leave the test's database behind, as a crashed test does.

use std::future::Future;
use std::ops::Deref;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

/// What a shared fixture does once its last test is done.
pub trait Fixture: Send + Sync + 'static {
    /// Stops what the fixture started and removes what it created (runs on
    /// the background runtime).
    fn teardown(self) -> impl Future<Output = ()> + Send;
}

/// The runtime that owns what shared fixtures start (2 worker threads, for the
/// process's lifetime).
pub fn background() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("shared-fixture")
            .enable_all()
            .build()
            .unwrap_or_else(|err| panic!("background runtime: {err}"))
    })
}

/// A fixture of type `T` shared by `tests` tests; declare it as a `static`.
#[derive(Debug)]
pub struct Shared<T> {
    tests: usize,
    state: Mutex<State<T>>,
    /// One set-up at a time.
    setting_up: tokio::sync::Mutex<()>,
}

#[derive(Debug)]
struct State<T> {
    value: Option<Arc<T>>,
    /// Leases held now.
    held: usize,
    /// Leases released since the set-up.
    released: usize,
}

impl<T: Fixture> Shared<T> {
    /// A fixture for the `tests` tests of a test binary.
    pub const fn new(tests: usize) -> Self {
        Shared {
            tests,
            state: Mutex::new(State {
                value: None,
                held: 0,
                released: 0,
            }),
            setting_up: tokio::sync::Mutex::const_new(()),
        }
    }

    /// The fixture, set up by `setup` on the [`background`] runtime if no test
    /// holds it yet. Panics (in every test asking) if the set-up panics.
    pub async fn get<F, Fut>(&'static self, setup: F) -> Lease<T>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T> + Send + 'static,
    {
        let _one_at_a_time = self.setting_up.lock().await;
        if let Some(value) = self.hold(None) {
            return Lease {
                shared: self,
                value: Some(value),
            };
        }
        let value = background()
            .spawn(setup())
            .await
            .unwrap_or_else(|err| panic!("setting up the shared fixture: {err}"));
        let value = self.hold(Some(Arc::new(value)));
        Lease {
            shared: self,
            value,
        }
    }

    /// Takes a lease on the current value, or installs `new` (a fresh set-up) and takes one.
    fn hold(&self, new: Option<Arc<T>>) -> Option<Arc<T>> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(new) = new {
            state.value = Some(new);
            state.released = 0;
        }
        let value = state.value.clone()?;
        state.held += 1;
        Some(value)
    }

    /// Called by a lease's drop: the value to tear down if this was the last test.
    fn release(&self) -> Option<Arc<T>> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.held -= 1;
        state.released += 1;
        if state.held == 0 && state.released >= self.tests {
            state.value.take()
        } else {
            None
        }
    }
}

/// One test's use of a [`Shared`] fixture (dereferences to it).
#[derive(Debug)]
pub struct Lease<T: Fixture> {
    shared: &'static Shared<T>,
    value: Option<Arc<T>>,
}

impl<T: Fixture> Deref for Lease<T> {
    type Target = T;

    fn deref(&self) -> &T {
        match &self.value {
            Some(value) => value,
            None => unreachable!("a lease holds its value until dropped"),
        }
    }
}

impl<T: Fixture> Drop for Lease<T> {
    fn drop(&mut self) {
        drop(self.value.take());
        let Some(last) = self.shared.release() else {
            return;
        };
        // Every lease is gone, so this is the only reference.
        let Ok(fixture) = Arc::try_unwrap(last) else {
            return;
        };
        // Wait (≤ 60 s) so the teardown finishes before the process may exit.
        let (done, finished) = std::sync::mpsc::channel();
        background().spawn(async move {
            fixture.teardown().await;
            let _ = done.send(());
        });
        let _ = finished.recv_timeout(Duration::from_secs(60));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::AsyncReadExt;

    static SETUPS: AtomicUsize = AtomicUsize::new(0);
    static TEARDOWNS: AtomicUsize = AtomicUsize::new(0);

    /// A server started by the set-up: it answers every connection with its generation.
    #[derive(Debug)]
    struct Echo {
        addr: std::net::SocketAddr,
        generation: usize,
    }

    impl Fixture for Echo {
        async fn teardown(self) {
            TEARDOWNS.fetch_add(1, Ordering::SeqCst);
        }
    }

    async fn echo() -> Echo {
        let generation = SETUPS.fetch_add(1, Ordering::SeqCst) + 1;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                use tokio::io::AsyncWriteExt;
                let _ = stream.write_all(&[generation as u8]).await;
            }
        });
        Echo { addr, generation }
    }

    async fn ask(addr: std::net::SocketAddr) -> u8 {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.read_u8().await.unwrap()
    }

    static ECHO: Shared<Echo> = Shared::new(3);

    /// One test thread, three "tests" each on its own runtime, as libtest runs them.
    #[test]
    fn a_fixture_outlives_each_tests_runtime_and_is_torn_down_after_the_last() {
        let runtime = || tokio::runtime::Runtime::new().unwrap();
        // Two tests at once: one set-up.
        let (first, second) = (runtime(), runtime());
        let lease = first.block_on(ECHO.get(echo));
        let again = second.block_on(ECHO.get(echo));
        assert_eq!((lease.generation, again.generation), (1, 1));
        assert_eq!(second.block_on(ask(again.addr)), 1);
        drop(lease);
        drop(first); // the first test's runtime ends; the server keeps serving
        assert_eq!(second.block_on(ask(again.addr)), 1);
        drop(again);
        drop(second);
        assert_eq!(
            TEARDOWNS.load(Ordering::SeqCst),
            0,
            "one test still to come"
        );
        // The third and last test: torn down when it is done.
        let third = runtime();
        let lease = third.block_on(ECHO.get(echo));
        assert_eq!(third.block_on(ask(lease.addr)), 1);
        drop(lease);
        assert_eq!(TEARDOWNS.load(Ordering::SeqCst), 1);
        assert_eq!(SETUPS.load(Ordering::SeqCst), 1);
        // A test beyond the declared number gets a fresh set-up.
        let lease = third.block_on(ECHO.get(echo));
        assert_eq!((lease.generation, SETUPS.load(Ordering::SeqCst)), (2, 2));
    }
}
