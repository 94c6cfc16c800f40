"""Pure data: manifest specs, status, named reasons and the error tree. Imports nothing else of pipectl."""
