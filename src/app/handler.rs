//! The [`Handler`] trait an app calls, and [`Callbacks`], the handler
//! made of closures by [`WebSocketApp::new`](super::WebSocketApp::new).
//!
//! Owns the callbacks' defaults (`on_reconnect` calls `on_open`; errors
//! without `on_error` are logged). It never decides when a callback runs:
//! that is the dispatcher's (`run`, `hub`).

use super::AppSender;
use crate::error::Error;
use crate::stats::Stats;
use crate::{Bytes, CloseFrame, Message};

/// Callbacks for a [`WebSocketApp`](crate::WebSocketApp), for handlers that keep state.
///
/// Every method has a default that does nothing (`on_reconnect` calls
/// `on_open`, so subscriptions sent there are sent again). Methods run on the
/// dispatcher thread, one at a time, in wire order. A panic in one is caught
/// and reported to `on_error` as [`Error::Handler`]; the connection goes on.
///
/// # Examples
///
/// ```no_run
/// use wsapp::{AppSender, Handler, Message, WebSocketApp, Client};
///
/// struct Counter { seen: u64 }
///
/// impl Handler for Counter {
///     fn on_open(&mut self, ws: &AppSender) {
///         let _ = ws.send_text("subscribe");
///     }
///     fn on_message(&mut self, _ws: &AppSender, _msg: Message) {
///         self.seen += 1;
///     }
/// }
///
/// WebSocketApp::with_handler(Client::new("ws://127.0.0.1:9001/"), Counter { seen: 0 })
///     .run_forever()?;
/// # Ok::<(), wsapp::Error>(())
/// ```
pub trait Handler: Send {
    /// The connection is open (the first time).
    ///
    /// # Examples
    ///
    /// ```
    /// struct Subscriber;
    /// impl wsapp::Handler for Subscriber {
    ///     fn on_open(&mut self, ws: &wsapp::AppSender) {
    ///         let _ = ws.send_text(r#"{"subscribe":"trades"}"#);
    ///     }
    /// }
    /// let app = wsapp::WebSocketApp::with_handler(wsapp::Client::new("ws://h/"), Subscriber);
    /// # let _ = app;
    /// ```
    fn on_open(&mut self, ws: &AppSender) {
        let _ = ws;
    }
    /// A text or binary message arrived.
    ///
    /// # Examples
    ///
    /// ```
    /// struct Echo;
    /// impl wsapp::Handler for Echo {
    ///     fn on_message(&mut self, ws: &wsapp::AppSender, msg: wsapp::Message) {
    ///         let _ = ws.send(msg);
    ///     }
    /// }
    /// let mut h = Echo;
    /// wsapp::Handler::on_message(&mut h, &wsapp::AppSender::default(), wsapp::Message::text("hi"));
    /// ```
    fn on_message(&mut self, ws: &AppSender, msg: Message) {
        let _ = (ws, msg);
    }
    /// The server sent a ping (the pong is already on its way).
    ///
    /// # Examples
    ///
    /// ```
    /// struct Pings(u64);
    /// impl wsapp::Handler for Pings {
    ///     fn on_ping(&mut self, _ws: &wsapp::AppSender, _payload: wsapp::Bytes) {
    ///         self.0 += 1;
    ///     }
    /// }
    /// let mut h = Pings(0);
    /// wsapp::Handler::on_ping(&mut h, &wsapp::AppSender::default(), wsapp::Bytes::new());
    /// assert_eq!(h.0, 1);
    /// ```
    fn on_ping(&mut self, ws: &AppSender, payload: Bytes) {
        let _ = (ws, payload);
    }
    /// The server sent a pong.
    ///
    /// # Examples
    ///
    /// ```
    /// struct LastPong(Option<std::time::Instant>);
    /// impl wsapp::Handler for LastPong {
    ///     fn on_pong(&mut self, _ws: &wsapp::AppSender, _payload: wsapp::Bytes) {
    ///         self.0 = Some(std::time::Instant::now());
    ///     }
    /// }
    /// let mut h = LastPong(None);
    /// wsapp::Handler::on_pong(&mut h, &wsapp::AppSender::default(), wsapp::Bytes::new());
    /// assert!(h.0.is_some());
    /// ```
    fn on_pong(&mut self, ws: &AppSender, payload: Bytes) {
        let _ = (ws, payload);
    }
    /// Something failed: connecting, the connection, or a callback.
    ///
    /// # Examples
    ///
    /// ```
    /// struct Log;
    /// impl wsapp::Handler for Log {
    ///     fn on_error(&mut self, _ws: &wsapp::AppSender, err: &wsapp::Error) {
    ///         eprintln!("{:?}: {err}", err.kind());
    ///     }
    /// }
    /// let mut h = Log;
    /// wsapp::Handler::on_error(&mut h, &wsapp::AppSender::default(), &wsapp::Error::NotConnected);
    /// ```
    fn on_error(&mut self, ws: &AppSender, err: &Error) {
        let _ = (ws, err);
    }
    /// A connection that opened has ended: with the peer's close frame after a
    /// close handshake, `None` after an abrupt end. Called once per connection.
    ///
    /// # Examples
    ///
    /// ```
    /// struct Closes(Vec<Option<u16>>);
    /// impl wsapp::Handler for Closes {
    ///     fn on_close(&mut self, _ws: &wsapp::AppSender, frame: Option<wsapp::CloseFrame>) {
    ///         self.0.push(frame.map(|f| u16::from(f.code)));
    ///     }
    /// }
    /// let mut h = Closes(Vec::new());
    /// wsapp::Handler::on_close(&mut h, &wsapp::AppSender::default(), None);
    /// assert_eq!(h.0, [None]);
    /// ```
    fn on_close(&mut self, ws: &AppSender, frame: Option<CloseFrame>) {
        let _ = (ws, frame);
    }
    /// A reconnect succeeded. Defaults to calling `on_open`.
    ///
    /// # Examples
    ///
    /// ```
    /// struct Resume { last_seq: u64 }
    /// impl wsapp::Handler for Resume {
    ///     fn on_reconnect(&mut self, ws: &wsapp::AppSender) {
    ///         let _ = ws.send_text(format!("resume {}", self.last_seq));
    ///     }
    /// }
    /// let app = wsapp::WebSocketApp::with_handler(wsapp::Client::new("ws://h/"), Resume { last_seq: 0 });
    /// # let _ = app;
    /// ```
    fn on_reconnect(&mut self, ws: &AppSender) {
        self.on_open(ws)
    }
    /// Called every stats interval (see [`WebSocketApp::stats_interval`](crate::WebSocketApp::stats_interval)).
    ///
    /// # Examples
    ///
    /// ```
    /// struct Watch;
    /// impl wsapp::Handler for Watch {
    ///     fn on_stats(&mut self, _ws: &wsapp::AppSender, stats: &wsapp::Stats) {
    ///         eprintln!("{stats}");
    ///     }
    /// }
    /// let app = wsapp::WebSocketApp::with_handler(wsapp::Client::new("ws://h/"), Watch)
    ///     .stats_interval(std::time::Duration::from_secs(5));
    /// # let _ = app;
    /// ```
    fn on_stats(&mut self, ws: &AppSender, stats: &Stats) {
        let _ = (ws, stats);
    }
}

type Cb0 = Box<dyn FnMut(&AppSender) + Send>;
type Cb<T> = Box<dyn FnMut(&AppSender, T) + Send>;
type CbRef<T> = Box<dyn FnMut(&AppSender, &T) + Send>;

/// The [`Handler`] made from closures by [`WebSocketApp::new`](crate::WebSocketApp::new) and its `on_*` setters.
///
/// # Examples
///
/// ```
/// let app: wsapp::WebSocketApp<wsapp::Callbacks> =
///     wsapp::WebSocketApp::new(wsapp::Client::new("ws://h/")).on_message(|_ws, msg| println!("{msg}"));
/// assert!(format!("{app:?}").contains("WebSocketApp"));
/// let empty = wsapp::Callbacks::default();
/// assert!(format!("{empty:?}").contains("on_message: false"));
/// ```
#[derive(Default)]
pub struct Callbacks {
    pub(super) open: Option<Cb0>,
    pub(super) message: Option<Cb<Message>>,
    pub(super) ping: Option<Cb<Bytes>>,
    pub(super) pong: Option<Cb<Bytes>>,
    pub(super) error: Option<CbRef<Error>>,
    pub(super) close: Option<Cb<Option<CloseFrame>>>,
    pub(super) reconnect: Option<Cb0>,
    pub(super) stats: Option<CbRef<Stats>>,
}

impl std::fmt::Debug for Callbacks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Callbacks")
            .field("on_open", &self.open.is_some())
            .field("on_message", &self.message.is_some())
            .field("on_ping", &self.ping.is_some())
            .field("on_pong", &self.pong.is_some())
            .field("on_error", &self.error.is_some())
            .field("on_close", &self.close.is_some())
            .field("on_reconnect", &self.reconnect.is_some())
            .field("on_stats", &self.stats.is_some())
            .finish()
    }
}

impl Handler for Callbacks {
    fn on_open(&mut self, ws: &AppSender) {
        if let Some(f) = &mut self.open {
            f(ws)
        }
    }
    // Inlined into the dispatch loop: every by-value hop of a message costs
    // a copy on the hot path.
    #[inline]
    fn on_message(&mut self, ws: &AppSender, msg: Message) {
        if let Some(f) = &mut self.message {
            f(ws, msg)
        }
    }
    fn on_ping(&mut self, ws: &AppSender, payload: Bytes) {
        if let Some(f) = &mut self.ping {
            f(ws, payload)
        }
    }
    fn on_pong(&mut self, ws: &AppSender, payload: Bytes) {
        if let Some(f) = &mut self.pong {
            f(ws, payload)
        }
    }
    fn on_error(&mut self, ws: &AppSender, err: &Error) {
        match &mut self.error {
            Some(f) => f(ws, err),
            None => log::warn!("wsapp: {err}"),
        }
    }
    fn on_close(&mut self, ws: &AppSender, frame: Option<CloseFrame>) {
        if let Some(f) = &mut self.close {
            f(ws, frame)
        }
    }
    fn on_reconnect(&mut self, ws: &AppSender) {
        match &mut self.reconnect {
            Some(f) => f(ws),
            None => self.on_open(ws),
        }
    }
    fn on_stats(&mut self, ws: &AppSender, stats: &Stats) {
        if let Some(f) = &mut self.stats {
            f(ws, stats)
        }
    }
}
