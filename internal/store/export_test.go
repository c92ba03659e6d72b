package store

// The queries of the lists and of a strategy's deletion, for the test that
// shows which index serves each.
var (
	ListRunsQuery       = listRunsQuery
	ListStrategiesQuery = listStrategiesQuery
	LockStrategySQL     = lockStrategySQL
)
