//! What browsers and scripts reach: the plain endpoints ([`routes`]), the WebSocket upgrade
//! and per-client task ([`ws`]) with its size limit ([`frame_limit`]), the Origin rule ([`origin`]) and the bearer token
//! ([`auth`]), the embedded dashboard and the headers every answer carries ([`assets`]), and
//! what the handlers share ([`state`]).

pub mod assets;
pub mod auth;
pub mod frame_limit;
pub mod origin;
pub mod routes;
pub mod state;
pub mod ws;
