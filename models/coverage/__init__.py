"""What money buys: premiums, the ledger, coverage periods, eligibility, allocation, suspensions, facility checks."""
