//! Which broker each machine publishes through when `mqtt.host` lists several: machine `i` of
//! the machine list goes to broker `i mod n`, and there is one connection per broker that gets
//! at least one machine. Pure: the transport opens the connections this plan names.

use crate::configuration::SimConfig;

/// One connection of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leg {
    /// Position in `mqtt.host` of the broker this connection starts on (its home).
    pub broker: usize,
    /// Positions in the machine list of the machines it carries.
    pub machines: Vec<usize>,
}

/// Machines spread over brokers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spread {
    /// One per connection, in broker order.
    pub legs: Vec<Leg>,
    /// For each machine (by position), the index into `legs` of its connection.
    pub route: Vec<usize>,
}

/// Spreads `machines` machines over `brokers` brokers round-robin (`brokers` is at least 1).
pub fn spread(machines: usize, brokers: usize) -> Spread {
    let brokers = brokers.max(1);
    let mut legs: Vec<Leg> = (0..brokers.min(machines))
        .map(|broker| Leg {
            broker,
            machines: Vec::new(),
        })
        .collect();
    let mut route = Vec::with_capacity(machines);
    for machine in 0..machines {
        // With i mod n, the brokers that get a machine are exactly the first min(n, machines),
        // so a broker's position is also its connection's.
        let leg = machine % brokers;
        legs[leg].machines.push(machine);
        route.push(leg);
    }
    Spread { legs, route }
}

/// The settings of the connection that starts on broker `home`: the broker list rotated so
/// that fail-over goes round-robin from there, and with several brokers a client id of its own
/// (`<client_id>-<home>`), so the persistent sessions of the connections stay apart. With one
/// broker the settings are `config` unchanged.
pub fn leg_config(config: &SimConfig, home: usize) -> SimConfig {
    let n = config.mqtt.brokers.len();
    if n < 2 {
        return config.clone();
    }
    let brokers: Vec<_> = (0..n)
        .map(|k| config.mqtt.brokers[(home + k) % n].clone())
        .collect();
    let mut leg = config.clone();
    leg.mqtt.client_id = format!("{}-{home}", config.mqtt.client_id);
    leg.mqtt.brokers = brokers;
    leg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machines_go_round_robin_and_idle_brokers_get_no_connection() {
        let plan = spread(5, 2);
        assert_eq!(plan.route, [0, 1, 0, 1, 0]);
        assert_eq!(
            plan.legs,
            [
                Leg {
                    broker: 0,
                    machines: vec![0, 2, 4]
                },
                Leg {
                    broker: 1,
                    machines: vec![1, 3]
                },
            ]
        );
        let few = spread(2, 3);
        assert_eq!(
            few.legs.len(),
            2,
            "broker 3 carries no machine: no connection"
        );
        assert_eq!(few.route, [0, 1]);
        let single = spread(3, 1);
        assert_eq!(single.route, [0, 0, 0]);
        assert_eq!(single.legs[0].machines, [0, 1, 2]);
    }

    #[test]
    fn every_machine_has_exactly_one_connection_on_broker_i_mod_n() {
        for machines in 1..12 {
            for brokers in 1..5 {
                let plan = spread(machines, brokers);
                for (machine, leg) in plan.route.iter().enumerate() {
                    assert_eq!(plan.legs[*leg].broker, machine % brokers);
                    assert!(plan.legs[*leg].machines.contains(&machine));
                }
                let carried: usize = plan.legs.iter().map(|l| l.machines.len()).sum();
                assert_eq!(carried, machines);
                assert!(plan.legs.iter().all(|l| !l.machines.is_empty()));
            }
        }
    }

    #[test]
    fn each_connection_fails_over_from_its_home_and_has_its_own_client_id() {
        let mut config = SimConfig::for_broker("a", 1);
        config.mqtt.client_id = "sim".into();
        assert_eq!(
            leg_config(&config, 0).mqtt.client_id,
            "sim",
            "one broker: as before"
        );
        config.mqtt.brokers = service_kit::parse_hosts("a:1,b:2,c:3", 1).unwrap();
        let leg = leg_config(&config, 1);
        let order: Vec<String> = leg.mqtt.brokers.iter().map(ToString::to_string).collect();
        assert_eq!(order, ["b:2", "c:3", "a:1"]);
        assert_eq!(leg.mqtt.client_id, "sim-1");
    }
}
