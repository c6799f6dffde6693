# elementwise kernel wrappers (placeholder)
