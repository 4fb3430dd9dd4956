"""Local stand-ins for SendGrid and Twilio, held to their official OpenAPI documents."""
