//! Gateway integration tests: the real `gateway` binary, a real Mosquitto per test on a free
//! port, real WebSocket and HTTP clients.

mod admission;
mod alarms;
mod auth;
mod cli;
mod client_memory;
mod dashboard;
mod fanout;
mod frames;
mod helpers;
mod history;
mod hostile;
mod http;
mod in_process;
mod lifecycle;
mod limits;
mod offline;
mod shards;
mod slow_client;
