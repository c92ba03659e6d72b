package store

import (
	"context"
	"fmt"
)

// UnfinishedJobStates are the states of River jobs still to be worked, or
// being worked: the queue's depth. Finished jobs (completed, cancelled,
// discarded) are history, kept by River for a while.
var UnfinishedJobStates = []string{"available", "pending", "retryable", "running", "scheduled"}

// JobCount is how many River jobs of one queue are in one state.
type JobCount struct {
	Queue string
	State string
	Count int64
}

// UnfinishedJobCounts counts River's unfinished jobs by queue and state.
// It reads only the unfinished rows, through River's index on (state,
// queue, ...), so its cost follows the queue's depth, not the history kept.
func (q *Queries) UnfinishedJobCounts(ctx context.Context) ([]JobCount, error) {
	rows, err := q.db.Query(ctx, `
		SELECT queue, state::text, count(*)
		FROM river_job
		WHERE state = ANY($1::river_job_state[])
		GROUP BY queue, state`, UnfinishedJobStates)
	if err != nil {
		return nil, fmt.Errorf("count unfinished jobs: %w", err)
	}
	defer rows.Close()
	var out []JobCount
	for rows.Next() {
		var c JobCount
		if err := rows.Scan(&c.Queue, &c.State, &c.Count); err != nil {
			return nil, fmt.Errorf("count unfinished jobs: %w", err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("count unfinished jobs: %w", err)
	}
	return out, nil
}
