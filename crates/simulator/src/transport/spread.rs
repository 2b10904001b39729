//! Which broker each machine publishes through when `mqtt.host` lists several: machine `i` of
//! the machine list goes to broker `i mod n`, and there is one connection per broker that gets
//! at least one machine. Pure: the transport opens the connections this plan names.

use crate::configuration::SimConfig;

/// Spreads `machines` machines over `brokers` brokers round-robin: per connection, in broker
/// order, the positions of its machines. With `i mod n`, the brokers that get a machine are
/// exactly the first `min(n, machines)`, so a connection's position is also its broker's.
pub fn spread(machines: usize, brokers: usize) -> Vec<Vec<usize>> {
    let brokers = brokers.max(1);
    let legs = brokers.min(machines);
    (0..legs)
        .map(|leg| (leg..machines).step_by(brokers).collect())
        .collect()
}

/// The connection of machine `machine` among `connections` of [`spread`]: `i mod n` too, since
/// with fewer machines than brokers every machine has a connection of its own.
pub fn connection_of(machine: usize, connections: usize) -> usize {
    machine % connections
}

/// The settings of the connection that starts on broker `home`: the broker list rotated so
/// that fail-over goes round-robin from there, and with several brokers a client id of its own
/// (`<client_id>-<home>`), so the persistent sessions of the connections stay apart. With one
/// broker the settings are `config` unchanged.
pub fn leg_config(config: &SimConfig, home: usize) -> SimConfig {
    let mut leg = config.clone();
    if leg.mqtt.brokers.len() > 1 {
        leg.mqtt.brokers.rotate_left(home);
        leg.mqtt.client_id = format!("{}-{home}", config.mqtt.client_id);
    }
    leg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machines_go_round_robin_and_idle_brokers_get_no_connection() {
        assert_eq!(spread(5, 2), [vec![0, 2, 4], vec![1, 3]]);
        let few = spread(2, 3);
        assert_eq!(few.len(), 2, "broker 3 carries no machine: no connection");
        assert_eq!(spread(3, 1), [vec![0, 1, 2]]);
        let route: Vec<usize> = (0..5).map(|m| connection_of(m, 2)).collect();
        assert_eq!(route, [0, 1, 0, 1, 0]);
    }

    #[test]
    fn every_machine_has_exactly_one_connection_on_broker_i_mod_n() {
        for machines in 1..12 {
            for brokers in 1..5 {
                let plan = spread(machines, brokers);
                for machine in 0..machines {
                    let leg = connection_of(machine, plan.len());
                    assert_eq!(
                        leg,
                        machine % brokers,
                        "the connection is on broker i mod n"
                    );
                    assert!(plan[leg].contains(&machine));
                }
                let carried: usize = plan.iter().map(Vec::len).sum();
                assert_eq!(carried, machines);
                assert!(plan.iter().all(|l| !l.is_empty()));
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
