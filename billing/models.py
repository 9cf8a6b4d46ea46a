# Plans, memberships and the Stripe event log arrive with the billing issue.
