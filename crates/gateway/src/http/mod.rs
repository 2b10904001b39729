//! What browsers and scripts reach: the plain endpoints ([`routes`]), the WebSocket upgrade
//! and per-client task ([`ws`]) with its size limit ([`frame_limit`]) and what a client's
//! messages mean ([`client_message`]), the Origin rule
//! ([`origin`]) and the bearer token ([`auth`]), the embedded dashboard and the headers every answer carries ([`assets`]),
//! what the handlers share ([`state`]), the rate-limited log of malformed requests
//! ([`request_errors`]), and what one client may hold in memory ([`outbox`]).

pub mod assets;
pub mod auth;
pub mod client_message;
pub mod frame_limit;
pub mod history;
pub mod origin;
pub mod outbox;
pub mod request_errors;
pub mod routes;
pub mod state;
pub mod ws;
