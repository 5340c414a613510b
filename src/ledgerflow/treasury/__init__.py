"""Treasury: trades from several desks normalised with Avro into positions, HQLA and the
liquidity coverage ratio, live."""
